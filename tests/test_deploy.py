import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_systemd_unit_runs_serve_and_stops_with_sigterm():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "deploy" / "midiseed.service").read_text())
    assert "midiseed serve" in unit["Service"]["ExecStart"]
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert unit["Service"]["RestartPreventExitStatus"] == "2"


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    for script in ["scripts/serve.sh", "scripts/test.sh"]:
        assert f"bash {script}" in readme
        assert (ROOT / script).is_file()
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
