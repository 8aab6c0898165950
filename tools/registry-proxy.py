#!/usr/bin/env python3
"""registry-proxy.py SOCKET [HOST...]: a forward HTTP proxy on a unix socket, for
package registries only.

tools/systemd-node.sh boots a container in a network namespace of its own that has no
route out (nothing of the host's root namespace is routed to it). The stack inside
still needs apt and PyPI: the container reaches this proxy through the unix socket
bind-mounted into it (a socat there turns 127.0.0.1:3128 into the socket), and the
proxy connects out from the host's namespace. Only the registry hosts given (default:
Debian's mirrors and PyPI) are served; anything else gets 403.

HTTPS is tunnelled (CONNECT host:443); plain HTTP (apt) is forwarded with the request
in absolute form, which HTTP/1.1 servers must accept, so keep-alive requests after the
first need no rewriting.
"""

import asyncio
import os
import sys

DEFAULT_HOSTS = (
    "deb.debian.org",
    "security.debian.org",
    "pypi.org",
    "files.pythonhosted.org",
)


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except OSError:
            pass


async def handle(client_reader, client_writer, allowed):
    try:
        head = await client_reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        client_writer.close()
        return
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3:
        client_writer.close()
        return
    method, target, _version = parts
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        port = int(port or 443)
    elif target.startswith("http://"):
        authority = target[len("http://") :].split("/", 1)[0]
        host, _, port = authority.partition(":")
        port = int(port or 80)
    else:
        host, port = "", 0
    if host not in allowed:
        client_writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await client_writer.drain()
        client_writer.close()
        print(f"registry-proxy: refused {method} {target}", file=sys.stderr, flush=True)
        return
    try:
        up_reader, up_writer = await asyncio.open_connection(host, port)
    except OSError as err:
        client_writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        await client_writer.drain()
        client_writer.close()
        print(f"registry-proxy: {host}:{port}: {err}", file=sys.stderr, flush=True)
        return
    if method == "CONNECT":
        client_writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await client_writer.drain()
    else:
        up_writer.write(head)
        await up_writer.drain()
    await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))


async def main():
    if len(sys.argv) < 2:
        sys.exit("usage: registry-proxy.py SOCKET [HOST...]")
    path = sys.argv[1]
    allowed = set(sys.argv[2:]) or set(DEFAULT_HOSTS)
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(
        lambda r, w: handle(r, w, allowed), path=path
    )
    os.chmod(path, 0o666)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
