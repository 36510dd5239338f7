import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_systemd_unit_runs_serve_and_stops_with_sigterm():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "deploy" / "midiseed.service").read_text())
    assert "midiseed serve" in unit["Service"]["ExecStart"]
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert unit["Service"]["RestartPreventExitStatus"] == "2"
    assert unit["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"  # a reload, not a restart
    assert unit["Service"]["LimitRTPRIO"] == "20"  # SCHED_FIFO 20 for a user that is not root
    # the README's steps make what the unit expects: its user, its venv, its config
    readme = (ROOT / "README.md").read_text()
    for made in ("useradd --system", "/opt/midiseed/.venv", "/etc/midiseed/config.toml"):
        assert made in readme
    assert unit["Service"]["ExecStart"].startswith(
        "/opt/midiseed/.venv/bin/midiseed serve --config /etc/midiseed/config.toml"
    )


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    for script in ["scripts/serve.sh", "scripts/test.sh"]:
        assert f"bash {script}" in readme
        assert (ROOT / script).is_file()
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_serve_script_help_prints_help_and_starts_no_server():
    import os
    import subprocess

    env = dict(os.environ, JACK_DEFAULT_SERVER=f"midiseed-helptest-{os.getpid()}")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "serve.sh"), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: midiseed serve" in done.stdout
    assert subprocess.run(["jack_lsp"], capture_output=True, env=env, timeout=30).returncode != 0


def test_rig_starts_the_one_jack_server_the_scripts_share(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, JACK_DEFAULT_SERVER=f"midiseed-rigtest-{os.getpid()}")
    log = tmp_path / "jackd.log"
    cmd = [sys.executable, "-m", "midiseed.bench.rig", "jackd", "--log", str(log)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout)
    try:
        assert subprocess.run(["jack_lsp"], capture_output=True, env=env, timeout=30).returncode == 0
        again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert again.returncode == 0 and again.stdout == ""  # one answers already: nothing started
    finally:
        os.kill(pid, signal.SIGTERM)
    assert "JACK server starting" in log.read_text()  # its output went to the log asked for
