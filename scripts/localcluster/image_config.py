"""The image configuration a Dockerfile gives (ENV, USER, ENTRYPOINT, CMD, EXPOSE), as `umoci config` options.

    python3 scripts/localcluster/image_config.py DOCKERFILE

prints the options NUL-separated, for scripts/images.sh, which packs a root file system built as the
Dockerfile says and takes the rest of the image from the Dockerfile itself rather than from a copy of it.
Only the forms the vendored Dockerfiles use are read: `ENV KEY value` and `ENV KEY=value`, a user name or
uid, exec-form (JSON) ENTRYPOINT and CMD, EXPOSE of one port. Any other instruction is about building
the file system, which is done elsewhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _env(rest: str) -> list[str]:
    key, separator, value = rest.partition("=") if "=" in rest.split(None, 1)[0] else rest.partition(" ")
    if not separator or not key:
        raise ValueError(f"ENV {rest!r}: expected KEY value or KEY=value")
    return ["--config.env", f"{key}={value.strip()}"]


def _exec_form(instruction: str, rest: str) -> list[str]:
    words = json.loads(rest)
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise ValueError(f"{instruction} {rest!r}: only the exec (JSON) form is read")
    option = "--config.entrypoint" if instruction == "ENTRYPOINT" else "--config.cmd"
    return [part for word in words for part in (option, word)]


def umoci_options(dockerfile: str) -> list[str]:
    options: list[str] = []
    for line in dockerfile.splitlines():
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "ENV":
            options += _env(rest)
        elif instruction == "USER":
            options += ["--config.user", rest]
        elif instruction in ("ENTRYPOINT", "CMD"):
            options += _exec_form(instruction, rest)
        elif instruction == "EXPOSE":
            options += ["--config.exposedports", rest if "/" in rest else f"{rest}/tcp"]
    return options


if __name__ == "__main__":
    sys.stdout.write("\0".join(umoci_options(Path(sys.argv[1]).read_text())))
