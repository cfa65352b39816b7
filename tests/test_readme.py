"""Pulumi.yaml's config block and the README's configuration reference are what the settings'
declarations (components/settings.py) generate."""

import subprocess
import sys

from tests.program_run import ROOT


def test_pulumi_yaml_and_the_configuration_reference_are_generated_from_the_declarations():
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
