"""Runtime images on first use: the invoker says a kind's image is being built, and who is building it is seen."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import entities
from invoker import runner
from invoker.containers import ContainerStartError, ImageMissing
from runtimes import build


def test_every_kind_has_an_image_recipe() -> None:
    for kind, rt in entities.RUNTIMES.items():
        assert rt.image in build.IMAGES, kind
        assert runner.IMAGES[kind] == f"{rt.image}:latest"


def test_only_the_default_python_and_node_images_are_built_at_up() -> None:
    at_up = {r for r, i in build.IMAGES.items() if i.at_up}
    defaults = {rt.image for rt in entities.RUNTIMES.values() if rt.default and rt.family in ("python", "nodejs")}
    assert defaults <= at_up
    assert at_up - defaults <= {"streamwhisk/blackbox-test", "streamwhisk/dockerskeleton"}


def test_a_missing_runtime_image_says_it_is_being_built() -> None:
    out = runner.start_failure("java:21", "streamwhisk/action-java21:latest", ImageMissing("x"))
    assert out.result == {"error": "The runtime for kind 'java:21' is not ready yet: its image "
                                   "streamwhisk/action-java21:latest is being built on this machine. "
                                   "Try again in a minute or two."}
    blackbox = runner.start_failure("blackbox", "me/img", ImageMissing("x"))
    assert blackbox.result == {"error": "Failed to pull container image 'me/img'."}
    assert runner.start_failure("java:21", "i", ContainerStartError("x")).result == {
        "error": runner.PROVISION_ERROR}


def test_building_sees_a_lock_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSK_SOCKET_ROOT", str(tmp_path))
    repo = "streamwhisk/action-test"
    assert build.building(repo) is False
    with build._lock(repo):  # flock locks belong to open files: building() opens its own, as another process would
        assert build.building(repo) is True
    assert build.building(repo) is False
