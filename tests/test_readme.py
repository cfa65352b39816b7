"""The README's configuration reference is the Pulumi.yaml config block."""

import subprocess
import sys

from tests.program_run import ROOT


def test_configuration_reference_matches_pulumi_yaml():
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check"])
    assert check.returncode == 0, "README.md's table differs: run scripts/config_reference.py and paste it"
