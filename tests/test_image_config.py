"""The image configuration scripts/images.sh takes from a Dockerfile (scripts/localcluster/image_config.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from localcluster.image_config import umoci_options  # noqa: E402

EXPORTER_LIKE = """FROM quay.io/prometheus/busybox:latest
LABEL maintainer="someone"

ENV POSTGRES_USERNAME postgres
ENV SSLMODE=disable
COPY pgpool2_exporter /bin/pgpool2_exporter

CMD ["/bin/sh", "-c", "export A=\\"${B}\\" ; /bin/pgpool2_exporter"]

EXPOSE     9719
"""


def test_env_cmd_and_expose_become_the_images_config():
    assert umoci_options(EXPORTER_LIKE) == [
        "--config.env", "POSTGRES_USERNAME=postgres", "--config.env", "SSLMODE=disable",
        "--config.cmd", "/bin/sh", "--config.cmd", "-c", "--config.cmd", 'export A="${B}" ; /bin/pgpool2_exporter',
        "--config.exposedports", "9719/tcp"]


def test_user_and_entrypoint_are_kept_and_build_steps_ignored():
    dockerfile = 'RUN set -ex; \\\n    adduser -u 70 postgres\nUSER postgres\nENTRYPOINT ["/opt/pgpool-II/bin/entrypoint.sh"]\n'
    assert umoci_options(dockerfile) == ["--config.user", "postgres",
                                         "--config.entrypoint", "/opt/pgpool-II/bin/entrypoint.sh"]


@pytest.mark.parametrize("line", ["CMD /bin/sh -c start", "ENV ALONE"])
def test_forms_it_cannot_read_are_refused(line: str):
    with pytest.raises(ValueError):
        umoci_options(line)
