"""Run the whole Pulumi program (__main__.py) under Pulumi mocks and collect what it registers.

Config is assembled the way the engine does it: Pulumi.yaml defaults, then the stack file,
then secrets, all as the strings the CLI stores. Inputs keep Pulumi's secret markers, so
tests can tell which values are secret; `props` has them unwrapped, as policies see them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc
from pulumi.runtime.settings import SETTINGS, set_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components import generated_secrets
from components.settings import PROJECT, load_settings
from components.stack_secrets import required_secrets

ROOT = Path(__file__).resolve().parent.parent
SECRET_SIG = rpc._special_sig_key
SECRET_VALUE = rpc._special_secret_sig


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def unwrap(value: Any) -> Any:
    """The value with every secret marker removed."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def manifest(props: Any) -> Any:
    """Properties as the API server would get them: the mock hands whole numbers back as floats."""
    if isinstance(props, dict):
        return {key: manifest(value) for key, value in props.items()}
    if isinstance(props, list):
        return [manifest(value) for value in props]
    if isinstance(props, float) and props.is_integer():
        return int(props)
    return props


@dataclass
class RegisteredResource:
    type: str
    name: str
    inputs: dict
    """As registered, secret values still wrapped in Pulumi's secret marker."""
    auto_named: bool = False
    """Registered without metadata.name: the provider named it (see auto_named)."""

    @property
    def props(self) -> dict:
        return unwrap(self.inputs)


@dataclass
class ProgramRun:
    resources: list[RegisteredResource]
    outputs: dict[str, Any]
    secret_outputs: set[str]

    def find(self, type_suffix: str, name: str) -> RegisteredResource:
        matches = [r for r in self.resources if r.type.endswith(type_suffix) and r.name == name]
        assert len(matches) == 1, f"expected one {type_suffix} {name!r}, found {len(matches)}"
        return matches[0]

    def named(self, type_suffix: str, object_name: str) -> RegisteredResource:
        """The object called `object_name` in Kubernetes (an auto-named one's name has a suffix)."""
        matches = [r for r in self.of_type(type_suffix) if r.props.get("metadata", {}).get("name") == object_name]
        assert len(matches) == 1, f"expected one {type_suffix} named {object_name!r}, found {len(matches)}"
        return matches[0]

    def of_type(self, type_suffix: str) -> list[RegisteredResource]:
        return [r for r in self.resources if r.type.endswith(type_suffix)]


class _RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[RegisteredResource] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = auto_named(args.typ, args.name, args.inputs)
        self.resources.append(RegisteredResource(args.typ, args.name, inputs, inputs is not args.inputs))
        return f"{args.name}-id", unwrap(inputs)

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def auto_named(type_: str, name: str, inputs: dict) -> dict:
    """Inputs as the Kubernetes provider's Check leaves them: an object without metadata.name gets
    `<resource name>-<suffix>` (the suffix is random there, fixed per name here)."""
    metadata = inputs.get("metadata")
    if not type_.startswith("kubernetes:") or not isinstance(metadata, dict) or "name" in metadata:
        return inputs
    suffix = hashlib.sha256(name.encode()).hexdigest()[:8]
    return {**inputs, "metadata": {**metadata, "name": f"{name}-{suffix}"}}


def project_defaults() -> dict[str, str]:
    """Defaults of Pulumi.yaml's config block, as config strings."""
    block = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]
    return {key.split(":", 1)[1]: _config_string(spec["default"]) for key, spec in block.items() if "default" in spec}


def stack_settings(stack_file: Path) -> dict:
    """A stack file's settings without what `make up` stores in it for that stack (encrypted secrets,
    the encryption salt): tests make their own secrets, under their own passphrase."""
    document = yaml.safe_load(stack_file.read_text()) or {}
    config = {key: value for key, value in (document.get("config") or {}).items() if not _holds_secret(value)}
    return {key: value for key, value in document.items() if key not in ("config", "encryptionsalt")} | {
        "config": config}


def _holds_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return "secure" in value or any(_holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def stack_file_config(stack: str) -> dict[str, str]:
    values = stack_settings(ROOT / f"Pulumi.{stack}.yaml")["config"]
    return {key.split(":", 1)[1]: _config_string(v) for key, v in values.items()}


def _config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def generate_secrets(config: dict[str, str], stack: str) -> dict[str, str]:
    """What the stack-initialisation script would store for this config."""
    settings = load_settings(config, stack)
    keys = list(required_secrets(settings))
    values = generated_secrets.generate(keys, settings.pgpool.name, settings.namespace)
    secrets = {k: v for k, v in values.items() if not k.startswith("userPasswords.")}
    users = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("userPasswords.")}
    if users:
        secrets["userPasswords"] = json.dumps(users)
    return secrets


def fresh_stack() -> None:
    """Forget the previous run. set_mocks keeps an existing root Stack (with its outputs) and the
    output tasks a failed run left pending, which the next run would await and fail on."""
    set_root_resource(None)
    SETTINGS.outputs.clear()


def run_program(config: dict[str, str], secrets: dict[str, str], stack: str = "dev",
                preview: bool = False) -> ProgramRun:
    """Run __main__.py once under mocks with this config (keys without the project prefix)."""
    fresh_stack()
    mocks = _RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview)
    full = {f"{PROJECT}:{k}": v for k, v in {**config, **secrets}.items()}
    pulumi.runtime.set_all_config(full, secret_keys=[f"{PROJECT}:{k}" for k in secrets])

    def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    _sync_await(run_pulumi_func(program))
    return ProgramRun(mocks.resources, *stack_outputs())


def stack_outputs() -> tuple[dict[str, Any], set[str]]:
    """The outputs the program just run exported, resolved, and the names of the secret ones."""
    outputs, secret_outputs = {}, set()
    for name, value in pulumi.runtime.get_root_resource().outputs.items():
        output = pulumi.Output.from_input(value)
        outputs[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            secret_outputs.add(name)
    return outputs, secret_outputs


VERIFIED_DIGEST = "@sha256:" + "5" * 64
"""Stands for the digest of an image its user verified: production stacks pin every image by digest."""


def production_config() -> dict[str, str | None]:
    """Stack config (as the CLI stores it) that makes a stack production: every image the defaults name, pinned by
    digest, and deletionPolicy unset (None, as stack_run and write_stack_file take it), so production's own default
    (DoNotTerminate) keeps the data, over the dev stack's WipeOut too."""
    s = load_settings({}, "dev")
    images = {"pgpoolImage": s.pgpool.image, "exporterImage": s.pgpool.exporter_image,
              "postgresClientImage": s.database.client_image, "prometheusImage": s.prometheus.image}
    return {"production": "true", "deletionPolicy": None,
            **{key: image + VERIFIED_DIGEST for key, image in images.items()}}


@functools.lru_cache(maxsize=None)
def dev_stack_inputs() -> tuple[dict[str, str], dict[str, str]]:
    """The dev stack's config and one set of generated secrets, fixed for a test session."""
    config = {**project_defaults(), **stack_file_config("dev")}
    return config, generate_secrets(config, "dev")
