"""Signed records (signing.py): `--sign-key` on reproduce and unlearn signs every record a run writes with Ed25519,
`verify --public-key` checks the signature first; keys are PEM files as `cryptography` writes them, so existing
keys work; `prunelora keygen` writes a pair and never replaces a file."""
from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from prunelora.driver.record import sealed

from .helpers import run_cli

SMOKE = ["--preset", "smoke", "--no-progress"]
IMAGE_RECORD = Path("seed0/models/resnet18/finetune_e1.record.json")
LM_RECORD = Path("seed0/models/llama/ga/record.json")


def pem_pair(folder: Path, name: str, passphrase: bytes | None = None) -> tuple[Path, Path]:
    """An Ed25519 pair written by `cryptography` itself, as an organisation's own tooling would."""
    key = Ed25519PrivateKey.generate()
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def verify(capsys, record: Path, *extra) -> tuple[int, str]:
    rc, out, err = run_cli(["verify", record, *extra], capsys)
    return rc, out + err


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {"auditor": pem_pair(folder, "auditor"), "other": pem_pair(folder, "other")}


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory, keys) -> Path:
    """The smoke image run, one model and one method at one budget, its records signed with the auditor's key."""
    from prunelora.cli import main

    out = tmp_path_factory.mktemp("signed") / "run"
    assert main(["reproduce", *SMOKE, "--models", "resnet18", "--methods", "finetune", "--epochs", "1",
                 "--out", str(out), "--sign-key", str(keys["auditor"][0])]) == 0
    return out


def test_keygen_writes_a_pair_and_never_replaces_a_file(tmp_path, capsys):
    private, public = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    rc, out, err = run_cli(["keygen", private, public], capsys)
    assert rc == 0, err
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey) and b"BEGIN PRIVATE KEY" in private.read_bytes()  # PKCS8
    der = serialization.load_pem_public_key(public.read_bytes()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert hashlib.sha256(der).hexdigest() in out  # the fingerprint: sha256 of the DER SubjectPublicKeyInfo
    before = (private.read_bytes(), public.read_bytes())
    for argv in ([private, tmp_path / "new.pub.pem"], [tmp_path / "new.pem", public]):
        rc, out, err = run_cli(["keygen", *argv], capsys)
        assert rc == 2 and "exists" in err and len(err.strip().splitlines()) == 1, err
    assert (private.read_bytes(), public.read_bytes()) == before
    assert not (tmp_path / "new.pem").exists() and not (tmp_path / "new.pub.pem").exists()


@pytest.mark.slow
def test_a_signed_record_verifies_with_its_public_key_only(signed_run, keys, capsys):
    record_file = signed_run / IMAGE_RECORD
    record = json.loads(record_file.read_text())
    public = serialization.load_pem_public_key(keys["auditor"][1].read_bytes())
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert record["signature"]["algorithm"] == "ed25519"
    assert record["signature"]["public_key"] == keys["auditor"][1].read_text()
    assert record["signature"]["fingerprint"] == hashlib.sha256(der).hexdigest()
    rc, said = verify(capsys, record_file, "--public-key", keys["auditor"][1])
    assert rc == 0 and "ok: signature: signed by the given public key" in said and "unsigned" not in said, said
    rc, said = verify(capsys, record_file)  # no key given: the record's own key, said
    assert rc == 0 and "the record's own: give --public-key" in said, said
    rc, said = verify(capsys, record_file, "--public-key", keys["other"][1])
    assert rc == 1 and "DIFFERS: signature" in said and "not by the given public key" in said, said


@pytest.mark.slow
def test_a_tampered_signed_record_fails_its_signature(signed_run, keys, tmp_path, capsys):
    record_file = tmp_path / "record.json"
    record = json.loads((signed_run / IMAGE_RECORD).read_text())
    record["cost"]["total_sec"] = 0.001  # digested only: the signature is what protects it
    changed = sealed(record)  # the digest made again ...
    changed["signature"] = record["signature"]  # ... under the old signature
    record_file.write_text(json.dumps(changed))
    rc, said = verify(capsys, record_file, "--public-key", keys["auditor"][1])
    assert rc == 1 and "DIFFERS: signature" in said and "changed after it was signed" in said, said
    resigned = sealed(record, keys["other"][0])  # signed again, with the attacker's own key
    record_file.write_text(json.dumps(resigned))
    rc, said = verify(capsys, record_file, "--public-key", keys["auditor"][1])
    assert rc == 1 and "not by the given public key" in said, said
    unsigned = sealed({k: v for k, v in record.items() if k != "signature"})
    record_file.write_text(json.dumps(unsigned))
    rc, said = verify(capsys, record_file, "--public-key", keys["auditor"][1])
    assert rc == 1 and "the record is unsigned" in said, said


@pytest.mark.slow
def test_a_language_models_records_are_signed_too(tmp_path, keys, capsys):
    out = tmp_path / "lm"
    rc, _, err = run_cli(["reproduce", "--task", "causal-lm", *SMOKE, "--methods", "ga", "--out", out,
                          "--sign-key", keys["auditor"][0]], capsys)
    assert rc == 0, err
    rc, said = verify(capsys, out / LM_RECORD, "--public-key", keys["auditor"][1])
    assert rc == 0 and "ok: signature" in said, said
    rc, said = verify(capsys, out / LM_RECORD, "--public-key", keys["other"][1])
    assert rc == 1 and "DIFFERS: signature" in said, said


@pytest.mark.slow
def test_key_rotation_old_records_verify_with_the_old_public_key(signed_run, keys, tmp_path, capsys):
    """A new pair for new runs; the records signed before keep verifying with the public key they were signed
    with, and only with it."""
    new_private, new_public = tmp_path / "2027.pem", tmp_path / "2027.pub.pem"
    assert run_cli(["keygen", new_private, new_public], capsys)[0] == 0
    out = tmp_path / "run"
    assert run_cli(["reproduce", *SMOKE, "--models", "resnet18", "--methods", "finetune", "--epochs", "1",
                    "--out", out, "--sign-key", new_private], capsys)[0] == 0
    assert verify(capsys, out / IMAGE_RECORD, "--public-key", new_public)[0] == 0
    assert verify(capsys, signed_run / IMAGE_RECORD, "--public-key", keys["auditor"][1])[0] == 0
    assert verify(capsys, signed_run / IMAGE_RECORD, "--public-key", new_public)[0] == 1


def test_an_encrypted_key_takes_its_passphrase_from_the_environment(tmp_path, monkeypatch):
    from prunelora.errors import UserError
    from prunelora.signing import PASSPHRASE_ENV, load_private_key

    private, _ = pem_pair(tmp_path, "locked", b"s3cret")
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(UserError, match=f"encrypted: put its passphrase in \\${PASSPHRASE_ENV}"):
        load_private_key(private)
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(UserError, match="passphrase"):
        load_private_key(private)
    monkeypatch.setenv(PASSPHRASE_ENV, "s3cret")
    assert isinstance(load_private_key(private), Ed25519PrivateKey)


def test_a_key_that_is_no_ed25519_pem_is_refused_before_anything_runs(tmp_path, capsys):
    ecdsa = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(ecdsa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (tmp_path / "junk.pem").write_text("not a key\n")
    for key, said in (("ec.pem", "not an Ed25519 key"), ("junk.pem", "not a readable PEM private key"),
                      ("missing.pem", "not found")):
        out = tmp_path / f"run-{key}"
        for task in ([], ["--task", "causal-lm"]):
            rc, _, err = run_cli(["reproduce", *task, *SMOKE, "--methods", "ga" if task else "finetune", "--out", out,
                                  "--sign-key", tmp_path / key], capsys)
            assert rc == 2 and said in err and len(err.strip().splitlines()) == 1, err
            assert not out.exists()
    rc, _, err = run_cli(["verify", tmp_path / "record.json", "--public-key", tmp_path / "junk.pem"], capsys)
    assert rc == 2 and "--public-key" in err and len(err.strip().splitlines()) == 1, err
