"""Reads `cargo metadata` on stdin; fails when a publishable crate of the
workspace declares a `rust-version` lower than one declared by a crate it
builds (normal and build dependencies, every platform, as locked).

Run by scripts/feature-check.sh."""

import json
import sys


def version(text):
    parts = [int(x) for x in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def dotted(parts):
    return ".".join(str(x) for x in parts)


def main():
    meta = json.load(sys.stdin)
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    failed = False
    for root in sorted(meta["workspace_members"]):
        package = packages[root]
        if package["publish"] is not None and not package["publish"]:
            continue
        name = package["name"]
        seen, stack = set(), [root]
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            for dep in nodes[pid]["deps"]:
                if any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
                    stack.append(dep["pkg"])
        needed, by = (0, 0, 0), "no dependency"
        for pid in seen - {root}:
            dep = packages[pid]
            if dep.get("rust_version") and version(dep["rust_version"]) > needed:
                needed, by = version(dep["rust_version"]), f"{dep['name']} {dep['version']}"
        declared = package.get("rust_version")
        if declared is None:
            print(f"feature-check: {name} declares no rust-version", file=sys.stderr)
            failed = True
        elif version(declared) < needed:
            print(
                f"feature-check: {name} declares rust-version {declared}, "
                f"but {by} needs {dotted(needed)}",
                file=sys.stderr,
            )
            failed = True
        else:
            print(
                f"feature-check: {name}: rust-version {declared}; "
                f"the highest its dependencies declare: {dotted(needed)} ({by})",
                file=sys.stderr,
            )
    sys.exit(1 if failed else 0)


main()
