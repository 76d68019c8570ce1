"""Pure parts of the sandbox: activation-scoped keys and the wall's rules."""

from __future__ import annotations

import doctest
import re
import uuid
from pathlib import Path

import pytest

from contracts import keys
from invoker import network

SECRET = b"k" * 32
AID = uuid.uuid4().hex


def test_doctests() -> None:
    from cli import services

    for mod in (keys, network, services):
        assert doctest.testmod(mod).failed == 0


def test_minted_key_has_the_form_clients_accept_and_names_its_activation() -> None:
    k = keys.mint(SECRET, AID, "alice", "alice", 10_000)
    uid, key = keys.split(k)
    assert uuid.UUID(uid).hex == AID
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", key)  # Basic auth, wsk and the npm client take it as it is
    got = keys.read_minted(SECRET, k, now_ms=9_999)
    assert got == keys.ActivationKey(AID, "alice", "alice", 10_000)


@pytest.mark.parametrize("tamper", [
    lambda k: k.replace(keys.split(k)[0], str(uuid.uuid4())),  # another activation's id
    lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # the signature
    lambda k: k.split(":")[0] + ":" + keys.mint(SECRET, AID, "root", "root", 10**15).split(":")[1].split(".")[0]
    + "." + k.split(".")[1],  # other claims under this key's signature
    lambda k: k.split(".")[0],  # no signature
    lambda k: k + "é",  # not ASCII
])
def test_tampered_keys_are_refused(tamper: object) -> None:
    k = keys.mint(SECRET, AID, "alice", "alice", 10_000)
    assert keys.read_minted(SECRET, tamper(k), now_ms=0) is None  # type: ignore[operator]


def test_ordinary_keys_are_not_activation_keys() -> None:
    assert keys.read_minted(SECRET, keys.GUEST_KEY, now_ms=0) is None
    assert keys.read_minted(SECRET, keys.generate(), now_ms=0) is None


def test_secret_is_made_once_and_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSK_ACTIVATION_KEY_SECRET", raising=False)
    a, b = keys.activation_secret(tmp_path), keys.activation_secret(tmp_path)
    assert a == b and len(a) == 32
    assert (tmp_path / keys.SECRET_FILE).stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("WSK_ACTIVATION_KEY_SECRET", "ab" * 32)
    assert keys.activation_secret(tmp_path) == b"\xab" * 32


def test_wall_opens_only_the_ingress_and_refuses_listed_ranges() -> None:
    text = network.wall_rules("SW-t", "10.9.0.1", 3233, (*network.METADATA, "192.0.2.0/24"))
    accepts = [line for line in text.splitlines() if line.endswith("-j ACCEPT")]
    assert accepts == ["-A SW-t-IN -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                       "-A SW-t-IN -d 10.9.0.1/32 -p tcp --dport 3233 -j ACCEPT"]
    assert text.splitlines()[-1] == "COMMIT"
    for cidr in ("169.254.0.0/16", "100.100.100.200/32", "192.0.2.0/24"):
        assert f"-A SW-t-FWD -d {cidr} -p tcp -j REJECT --reject-with tcp-reset" in text
    # Everything else that reaches the host from the bridge is refused: the last IN rules match all.
    assert "-A SW-t-IN -j REJECT --reject-with icmp-port-unreachable" in text


def test_names_fit_linux_limits() -> None:
    _, bridge, chain = network.names("t" * 40)
    assert len(bridge) <= 15 and len(f"{chain}-FWD") <= 28
