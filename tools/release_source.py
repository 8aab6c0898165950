#!/usr/bin/env python3
"""Put the source release (sdist) of an installed project where its checkout would be.

    release_source.py NAME VERSION DEST

The library's git_clone runs it when a plugin's clone of a library cannot be made
(its git server is out of reach) and the library was installed from the package index
instead: plugins do not only install what they clone, they read files of the checkout
(zaqar copies `$DEST/zaqar-ui/zaqar_ui/enabled/*` into Horizon, designate and blazar
link their dashboards' panels from theirs). The source release of the version that was
installed has those files, in the checkout's layout.

The index is the one the installs use: UV_INDEX_URL, UV_DEFAULT_INDEX, PIP_INDEX_URL,
else PyPI (a PEP 503 "simple" index; `file://` directories too). DEST must not exist;
it is made only whole (unpacked next to it, then renamed). Exit status 1, with the
reason on stderr, when the index has no source release of that version.
"""

import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile

SOURCE_SUFFIXES = (".tar.gz", ".zip")


def normalize(name):
    """PEP 503's name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def index_url():
    for var in ("UV_INDEX_URL", "UV_DEFAULT_INDEX", "PIP_INDEX_URL"):
        if os.environ.get(var):
            return os.environ[var]
    return "https://pypi.org/simple"


def read(url):
    # A file:// index is a tree of directories, each with its index.html.
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file" and os.path.isdir(urllib.parse.unquote(parsed.path)):
        url = url.rstrip("/") + "/index.html"
    with urllib.request.urlopen(url, timeout=120) as answer:
        return answer.read()


def source_link(page_url, page, name, version):
    """The href of NAME's source release at VERSION on the project's index page."""
    for href in re.findall(r'href="([^"]+)"', page):
        href = href.replace("&amp;", "&")
        file = urllib.parse.unquote(urllib.parse.urlparse(href).path.rsplit("/", 1)[-1])
        suffix = next((s for s in SOURCE_SUFFIXES if file.endswith(s)), None)
        if suffix is None:
            continue
        dist, _, file_version = file[: -len(suffix)].rpartition("-")
        if normalize(dist) == normalize(name) and file_version == version:
            return urllib.parse.urljoin(page_url, href)
    return None


def check_digest(link, data):
    fragment = urllib.parse.urlparse(link).fragment
    if fragment.startswith("sha256="):
        want = fragment.split("=", 1)[1]
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise SystemExit(f"{link}: sha256 {got}, the index says {want}")


def safe_members(archive_names, root):
    """Refuse an archive with a member outside ROOT (absolute, or through ..)."""
    for member in archive_names:
        target = os.path.realpath(os.path.join(root, member))
        if target != root and not target.startswith(root + os.sep):
            raise SystemExit(f"the source release has a member outside itself: {member}")


def unpack(archive, file_name, into):
    if file_name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            safe_members(z.namelist(), into)
            z.extractall(into)
        return
    with tarfile.open(archive) as t:
        members = [m for m in t.getmembers() if m.isfile() or m.isdir()]
        safe_members([m.name for m in members], into)
        t.extractall(into, members=members)


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    name, version, dest = sys.argv[1:4]
    dest = os.path.abspath(dest)
    if os.path.exists(dest):
        raise SystemExit(f"{dest} exists already")
    page_url = index_url().rstrip("/") + "/" + normalize(name) + "/"
    page = read(page_url).decode("utf-8", "replace")
    link = source_link(page_url, page, name, version)
    if link is None:
        raise SystemExit(f"the index ({page_url}) has no source release of {name} {version}")
    data = read(link.split("#", 1)[0])
    check_digest(link, data)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".release-", dir=parent)
    try:
        file_name = urllib.parse.urlparse(link).path.rsplit("/", 1)[-1]
        archive = os.path.join(work, file_name)
        with open(archive, "wb") as f:
            f.write(data)
        tree = os.path.join(work, "tree")
        os.mkdir(tree)
        unpack(archive, file_name, os.path.realpath(tree))
        # A source release holds one directory, NAME-VERSION/.
        top = os.listdir(tree)
        root = os.path.join(tree, top[0]) if len(top) == 1 else tree
        if not os.path.isdir(root):
            raise SystemExit(f"{file_name} holds no directory")
        os.rename(root, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{dest}: the source release {file_name}")


if __name__ == "__main__":
    main()
