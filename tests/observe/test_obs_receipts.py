"""Signed receipts of real runs (scripted CLI through the real runner): they verify offline, and
any change to them does not."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator_nb import audit
from orchestrator_nb.cli import main
from orchestrator_nb.config import AgentConfig, Settings, load_settings
from orchestrator_nb.observe.receipts import receipt_path, verify_receipt
from orchestrator_nb.workflow.api import arun
from orchestrator_nb.workflow.models import Workflow

SCRIPTED = Path(__file__).parents[1] / "fakes" / "scripted_cli.py"


@pytest.fixture(autouse=True)
def _config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config-home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


@pytest.fixture
async def finished(tmp_path: Path) -> tuple[Path, str]:
    ws = tmp_path / "ws"
    ws.mkdir()
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"match": "", "write": {"calc.py": "x = 1\n"}, "say": "done"}]))
    argv = [sys.executable, str(SCRIPTED), str(rules), "{prompt}"]
    agent = AgentConfig(driver="command", argv=argv, retries=0, retry_wait=0, timeout=60)
    flow = yaml.safe_load("flow: {steps: [{id: impl, agent: a, prompt: '{{ task }}'}]}")
    settings = Settings(
        agents={"a": agent},
        workflows={k: Workflow.model_validate(v) for k, v in flow.items()},
        limits=load_settings(cwd=ws).limits,
    )
    result = await arun("write calc", "flow", workspace=ws, config=settings)
    assert result.ok, result.error
    return ws, result.run_id


def _payload(receipt: dict[str, Any]) -> dict[str, Any]:
    value = json.loads(receipt["payload"])
    assert isinstance(value, dict)
    return value


def test_a_finished_run_has_a_receipt_that_verifies(finished: tuple[Path, str]) -> None:
    ws, run_id = finished
    receipt = audit.receipt(run_id, workspace=ws)
    check = audit.verify_receipt(receipt)
    assert check.ok and check.trusted, check
    payload = check.payload
    assert payload["run_id"] == run_id and payload["outcome"] == "completed"
    assert payload["task_sha256"] == hashlib.sha256(b"write calc").hexdigest()
    assert payload["changes"] == [{"path": "calc.py", "kind": "added"}]
    assert [s["step_id"] for s in payload["steps"]] == ["impl"]
    # Tied to the trail: the run_finished record it names is in the workspace's audit trail.
    records = audit.AuditTrail(ws / ".orchestrator" / "audit.jsonl").records()
    finished_rec = next(r for r in records if r["kind"] == "run_finished")
    assert payload["audit"] == {"seq": finished_rec["seq"], "hash": finished_rec["hash"]}
    assert audit.verify(ws).ok


@pytest.mark.parametrize("field", ["cost", "changes", "signature", "key"])
def test_a_changed_receipt_fails(finished: tuple[Path, str], field: str) -> None:
    ws, run_id = finished
    receipt = audit.receipt(run_id, workspace=ws)
    if field == "cost":
        receipt["payload"] = receipt["payload"].replace('"cost_usd":null', '"cost_usd":0.01', 1)
    elif field == "changes":
        payload = _payload(receipt)
        payload["changes"] = []
        receipt["payload"] = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    elif field == "signature":
        sig = bytearray(base64.b64decode(receipt["signature"]))
        sig[0] ^= 1
        receipt["signature"] = base64.b64encode(bytes(sig)).decode()
    else:  # re-signed by someone else's key, with that key embedded
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        other = Ed25519PrivateKey.generate()
        raw = other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        receipt["public_key"] = base64.b64encode(raw).decode()
        receipt["signature"] = base64.b64encode(other.sign(receipt["payload"].encode())).decode()
    check = verify_receipt(receipt)
    assert not check.ok, check


def test_offline_check_with_the_exported_public_key(
    finished: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, run_id = finished
    pem = tmp_path / "signer.pem"
    pem.write_text(audit.public_key_pem())
    file = receipt_path(ws, run_id)
    # Another user, on another machine: no key of their own, only the exported public key.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "checker"))
    untrusted = verify_receipt(file)
    assert untrusted.ok and not untrusted.trusted
    assert verify_receipt(file, public_key=pem).trusted
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    stranger = Ed25519PrivateKey.generate().public_key()
    other_pem = stranger.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert not verify_receipt(file, public_key=other_pem).ok


def test_cli_receipt_verify(
    finished: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, run_id = finished
    assert main(["audit", "receipt", run_id, "--workspace", str(ws), "--verify"]) == 0
    assert "receipt valid" in capsys.readouterr().out
    assert main(["audit", "public-key"]) == 0
    assert "BEGIN PUBLIC KEY" in capsys.readouterr().out
    file = receipt_path(ws, run_id)
    data = json.loads(file.read_text())
    data["payload"] = data["payload"].replace('"outcome":"completed"', '"outcome":"failed"')
    file.write_text(json.dumps(data))
    assert main(["audit", "receipt", run_id, "--workspace", str(ws), "--verify"]) == 1
    assert "INVALID" in capsys.readouterr().err
    assert main(["audit", "receipt", "no-such-run", "--workspace", str(ws)]) == 1
    assert "no receipt for run no-such-run" in capsys.readouterr().err
