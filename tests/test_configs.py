"""Every shipped YAML under configs/ parses, instantiates and fits one batch on the CPU; config
mistakes in them exit with one message and no traceback. The multi-environment configs of
``configs/leads/`` go through ``hybrid environments fit`` on tiny files with an ``environment``
dim; every other one through ``hybrid fit``.

The data are tiny simulations of each config's protocol (a few frames), so the windows are
overridden to 3 frames (batch 1); that the configs' own windows fit the full protocols is checked
separately, by arithmetic on the protocol.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from hybrid.cli import main
from hybrid.data.protocols import DATASETS, build

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
REAL_DATA = {"sst_ostia.yaml", "ostia_flow.yaml"}  # on the real file: tests/test_ostia*.py
ENVIRONMENT_CONFIGS = [p for p in CONFIGS if p.parent.name == "leads"]
CONFIGS = [p for p in CONFIGS if p.name not in REAL_DATA and p not in ENVIRONMENT_CONFIGS]
ENVIRONMENT_PROTOCOL = {"lv": "lotka_volterra", "gs": "gray_scott", "ns": "navier_stokes"}
EXTRA = {  # configs outside their protocol's folder
    "quickstart.yaml": "advection_diffusion",
    "hovmoller.yaml": "hovmoller",
    "hovmoller_flow.yaml": "hovmoller",
    "latlon_band.yaml": "moving_flow_latlon",
}
TINY = {  # (train samples, test samples, frames per split): 3-frame windows fit each split
    "pendulum": (4, 2, 8),
    "reaction_diffusion": (4, 2, 8),
    "advection_diffusion": (4, 2, 8),
    "shallow_water": (4, 2, 8),
    "wave": (1, 1, 25),  # one record, split by time: 20 training frames and 5 validation frames
    "moving_flow": (4, 2, 8),
    "moving_flow_latlon": (4, 2, 8),
    "hovmoller": (1, 1, 40),  # one record split by time: 32 training and 8 validation days
    "forced_decay": (4, 2, 8),
}
WINDOW = {
    "moving_flow": 6,
    "moving_flow_latlon": 6,
    "hovmoller": 6,
}  # frames per window where 3 is too few (a flow estimator reads 4)
TRAINED = {
    "moving_flow": ["c"],
    "moving_flow_latlon": ["c"],
    "hovmoller": ["olr"],
}  # variables trained on, when not all the protocol's
QUIET = [
    "--model.warm_start=false",  # one batch checks the config; tests/test_warm_start.py the fit
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def protocol_of(path: Path) -> str:
    folder = path.parent.parent if path.parent.name == "official" else path.parent
    name = EXTRA.get(path.name, folder.name)
    assert name in DATASETS, f"{path}: no protocol for this config; add it to EXTRA"
    return name


def label(path: Path) -> str:
    return str(path.relative_to(ROOT / "configs"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These convolutions are tiny: with several intra-op threads on a busy 2-core machine the
    threads' spin-waits cost 5x the work (160 s instead of 30 s for this file)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """``tiny_files(name) -> (train, test)``: small simulated files of a protocol, written once."""
    from hybrid.data.io import write_netcdf
    from hybrid.data.simulate import simulate_dataset

    root, cache = tmp_path_factory.mktemp("tiny"), {}

    def make(name: str) -> tuple[str, str]:
        if name not in cache:
            n_train, n_test, frames = TINY[name]
            spec = build(name)
            spec.n_times = {"train": frames, "test": frames}
            paths = []
            for split, n in (("train", n_train), ("test", n_test)):
                ds = simulate_dataset(spec, split, n_samples=n, progress=False)
                paths.append(str(write_netcdf(ds, root / f"{name}_{split}.nc")))
            cache[name] = tuple(paths)
        return cache[name]

    return make


def fit_args(path: Path, tiny_files, tmp_path: Path, *extra: str) -> list[str]:
    train, test = tiny_files(protocol_of(path))
    return [
        "fit",
        "--config",
        str(path),
        "--data.path",
        train,
        "--data.test_path",
        test,
        f"--data.window={WINDOW.get(protocol_of(path), 3)}",
        f"--data.eval_window={WINDOW.get(protocol_of(path), 3)}",
        "--data.stride=1",
        "--data.batch_size=1",
        "--trainer.fast_dev_run=true",
        "--trainer.default_root_dir",
        str(tmp_path),
        *QUIET,
        *extra,
    ]


def test_every_protocol_folder_has_configs():
    folders = {p.parent.name for p in CONFIGS if p.parent.name in DATASETS}
    variants = {"advection_diffusion_decay"}  # uses configs/advection_diffusion/ with --data.path
    variants |= {"hovmoller"}  # configs/hovmoller.yaml and configs/moving_flow/hovmoller_flow.yaml
    variants |= {"moving_flow_latlon"}  # configs/moving_flow/latlon_band.yaml
    assert folders == set(DATASETS) - variants
    assert len(CONFIGS) >= 23


@pytest.mark.parametrize("path", CONFIGS, ids=label)
def test_config_fits_one_batch_on_cpu(path, tiny_files, tmp_path):
    main(fit_args(path, tiny_files, tmp_path))


@pytest.mark.parametrize("path", CONFIGS, ids=label)
def test_config_matches_its_protocol(path):
    """Variables, paths and run folder follow the layout in data/README.md, and the windows fit
    the full protocol's splits (so a real run has training, validation and test windows)."""
    name = protocol_of(path)
    config = yaml.safe_load(path.read_text())
    data, spec = config["data"], build(name)
    assert data["variables"] == TRAINED.get(name, list(spec.names))
    if path.name in EXTRA:
        return
    assert data["path"] == f"data/generated/{name}/train.nc"
    assert data["test_path"] == f"data/generated/{name}/test.nc"
    assert config["trainer"]["default_root_dir"] == f"runs/{label(path).removesuffix('.yaml')}"
    window = data["window"]
    eval_window = data.get("eval_window") or window
    length, val = spec.n_times["train"], data.get("val_fraction", 0.2)
    if spec.n_samples["train"] >= 2:  # split by trajectory: every split has whole trajectories
        assert round(spec.n_samples["train"] * val) >= 1
        train_frames = val_frames = length
    else:  # one record, split by time
        train_frames = round(length * (1 - val))
        val_frames = length - train_frames
    assert window <= train_frames and eval_window <= val_frames
    assert eval_window <= spec.n_times["test"]


def environment_protocol_of(path: Path) -> str:
    """``configs/leads/<lv|gs|ns>_<method>.yaml``: the protocol its prefix names."""
    name = ENVIRONMENT_PROTOCOL.get(path.name.split("_")[0])
    assert name is not None, f"{path}: name it <{'|'.join(ENVIRONMENT_PROTOCOL)}>_<method>.yaml"
    return name


@pytest.fixture(scope="module")
def tiny_environment_files(tmp_path_factory):
    """``(name) -> (train, test)``: one trajectory of 4 short frames per environment and split.
    Navier-Stokes starts are unspun random fields (the 30-unit spin-up is the slow test's)."""
    from hybrid.data.environments import simulate_environments
    from hybrid.data.io import write_netcdf
    from hybrid.data.protocols import gaussian_random_field

    root, cache = tmp_path_factory.mktemp("tiny_environments"), {}

    def make(name: str) -> tuple[str, str]:
        if name not in cache:
            spec = build(name)
            first = spec.environments[0]
            first.n_times, first.dt = {"train": 4, "test": 4}, first.dt / 10
            if name == "navier_stokes":
                first.initial_condition = lambda rng, n: gaussian_random_field(rng, n)[:, None]
            files = {s: simulate_environments(spec, s, n_samples=1) for s in ("train", "test")}
            cache[name] = tuple(
                str(write_netcdf(ds, root / f"{name}_{s}.nc")) for s, ds in files.items()
            )
        return cache[name]

    return make


@pytest.mark.parametrize("path", ENVIRONMENT_CONFIGS, ids=label)
def test_environment_config_fits_one_batch_on_cpu(path, tiny_environment_files, tmp_path):
    train, test = tiny_environment_files(environment_protocol_of(path))
    data = ["--data.path", train, "--data.test_path", test, "--data.window=3"]
    run = ["--trainer.fast_dev_run=true", "--trainer.default_root_dir", str(tmp_path), *QUIET]
    main(["environments", "fit", "--config", str(path), *data, "--data.batch_size=1", *run])


@pytest.mark.parametrize("path", ENVIRONMENT_CONFIGS, ids=label)
def test_environment_config_matches_its_protocol(path):
    """Variables, files and environment count are the protocol's (data/generated/leads/), and
    the training window fits its trajectories."""
    name = environment_protocol_of(path)
    config, spec = yaml.safe_load(path.read_text()), build(name)
    data, first = config["data"], spec.environments[0]
    prefix = path.name.split("_")[0]
    assert data["variables"] == list(first.names)
    assert data["path"] == f"data/generated/leads/{prefix}_train.nc"
    assert data["test_path"] == f"data/generated/leads/{prefix}_test.nc"
    assert data["window"] <= first.n_times["train"]
    chosen = data.get("environments") or range(len(spec.environments))
    assert all(0 <= e < len(spec.environments) for e in chosen)
    assert config["model"]["n_environments"] == len(chosen)


def test_every_environment_protocol_has_a_config():
    assert {environment_protocol_of(p) for p in ENVIRONMENT_CONFIGS} == set(
        ENVIRONMENT_PROTOCOL.values()
    )


def config(name: str) -> Path:
    return ROOT / "configs" / name


@pytest.mark.parametrize(
    "path, override, message",
    [
        (
            "advection_diffusion/aphynity.yaml",
            ["--model.physics.class_path=hybrid.physics.NoSuchPrior"],
            "NoSuchPrior",
        ),
        (
            "advection_diffusion/physics.yaml",
            ["--model.physics.init_args.kappa_typo=1"],
            "kappa_typo",
        ),
        (
            "wave/aphynity_incomplete.yaml",
            ["--model.objective.init_args.tau_two=1"],
            "tau_two",
        ),
        (
            "pendulum/aphynity_incomplete.yaml",
            ["--data.variables=[theta]"],
            "data's state [1] (variables ['theta'])",
        ),
        (  # a network alone: no prior to link the grid into
            "pendulum/data.yaml",
            ["--data.variables=[theta]"],
            "data's state [1] (variables ['theta'])",
        ),
    ],
    ids=["unknown-class", "wrong-init-arg", "wrong-objective-arg", "channels", "channels-no-prior"],
)
def test_config_mistake_exits_with_one_clear_message(
    path, override, message, tiny_files, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_:
        main(fit_args(config(path), tiny_files, tmp_path, *override))
    err = capsys.readouterr().err + str(exit_.value.code)
    assert exit_.value.code not in (0, None)
    assert message in err
    assert "Traceback" not in err
