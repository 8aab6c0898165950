#!/usr/bin/env python3
"""Add or replace one cloud in a clouds.yaml, as DevStack's tool of this name does.

Plugins run it to register a cloud of their own next to DevStack's:

    $PYTHON $TOP_DIR/tools/update_clouds_yaml.py --file /etc/openstack/clouds.yaml \\
        --os-cloud NAME --os-region-name RegionOne --os-auth-url URL \\
        --os-username USER --os-password PW (--os-project-name P | --os-system-scope all) \\
        [--os-cacert FILE]

Without --file the user's ~/.config/openstack/clouds.yaml is written (its directory
made when missing). The other clouds of the file are kept; the named one is replaced
whole. Users and projects are in the `default` domain. The file is left readable by
its owner only, since it holds passwords.
"""

import argparse
import os
import sys

import yaml


def cloud_entry(args):
    auth = {
        "auth_url": args.os_auth_url,
        "username": args.os_username,
        "user_domain_id": "default",
        "password": args.os_password,
    }
    if args.os_project_name and args.os_system_scope:
        print(
            "WARNING: both --os-project-name and --os-system-scope given; "
            "the system scope wins."
        )
    if args.os_system_scope:
        auth["system_scope"] = args.os_system_scope
    elif args.os_project_name:
        auth["project_name"] = args.os_project_name
        auth["project_domain_id"] = "default"
    entry = {"region_name": args.os_region_name, "auth": auth}
    if args.os_cacert:
        entry["cacert"] = args.os_cacert
    return entry


def update(path, name, entry, make_dir):
    data = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    data.setdefault("clouds", {})
    if data["clouds"] is None:
        data["clouds"] = {}
    data["clouds"][name] = entry
    directory = os.path.dirname(path)
    if make_dir and directory:
        os.makedirs(directory, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        pass
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, default_flow_style=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file")
    parser.add_argument("--os-cloud", required=True)
    parser.add_argument("--os-region-name", default="RegionOne")
    parser.add_argument("--os-cacert")
    parser.add_argument("--os-auth-url", required=True)
    parser.add_argument("--os-username", required=True)
    parser.add_argument("--os-password", required=True)
    parser.add_argument("--os-project-name")
    parser.add_argument("--os-system-scope")
    args = parser.parse_args()
    path = args.file or os.path.expanduser("~/.config/openstack/clouds.yaml")
    update(path, args.os_cloud, cloud_entry(args), make_dir=not args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
