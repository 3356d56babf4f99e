import json

import pytest

import config
from config import UserError, parse_args


def parse(argv):
    return parse_args(argv, "doc")[0]


def test_overrides_are_typed_and_land_in_their_spec():
    cfg = parse(["--preset=smoke", "--lr=3e-4", "--block_out_channels=32,64",
                 "--condition=class", "--flip_p=0", "--run_name=x"])
    assert cfg.run.lr == 3e-4 and cfg.model.block_out_channels == (32, 64)
    assert cfg.model.condition == "class" and cfg.run.flip_p == 0.0 and cfg.run.run_name == "x"


def test_what_a_model_is_is_apart_from_how_a_run_goes():
    """The model spec is saved with an export: nothing of the trainer's machine or budget is in it."""
    model, run = config.MODEL_KEYS, config.RUN_KEYS
    assert not model & run
    assert {"out_dir", "threads", "lr", "max_minutes", "data_dir", "device"} <= run
    assert {"channels", "block_out_channels", "condition", "prediction_type"} <= model


def test_keyword_overrides_replace_preset_values():
    cfg = config.preset("cpu", max_steps=5, lr=1e-3)
    assert cfg.run.max_steps == 5 and cfg.run.lr == 1e-3 and cfg.model.channels == 4  # the rest stays


def test_seed_preset_is_the_reference_setup():
    from model import build_scheduler
    cfg = parse([])
    m, r = cfg.model, cfg.run
    assert m.block_out_channels == (64, 128, 256) and m.layers_per_block == 2
    assert m.down_block_types == ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D")
    assert config.up_block_types(m) == ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    s = build_scheduler(m).config
    assert (s.num_train_timesteps, s.beta_start, s.beta_end, s.beta_schedule) == (1000, 1e-4, 0.02,
                                                                                 "linear")
    assert (r.lr, r.batch_size, r.max_steps, config.EPOCHS) == (1e-4, 16, 0, 500)
    assert (m.channels, r.flip_p, m.prediction_type) == (3, 0.5, "epsilon")
    assert config.EPOCHS * 346 // 16 + 1 == 10813  # 500 epochs of the shipped icons at batch 16


@pytest.mark.parametrize("argv, message", [
    (["--nope=1"], "unknown option --nope; valid options: "),
    (["--lr=abc"], "--lr takes a number"),
    (["--compile=maybe"], "takes true or false"),
    (["--batch_size=1.5"], "--batch_size takes an integer"),
    (["--lr=-1"], "lr must be positive"),
    (["--image_size=30"], "not divisible by 4"),
    (["--preset=huge"], "unknown preset 'huge'"),
    (["--channels=2"], "channels must be 3"),
    (["--beta_schedule=cubic"], "beta_schedule must be one of"),
    (["--condition=prompts"], "condition must be one of none, class, text"),
    (["--background=red"], "not a colour"),
    (["lr=1"], "arguments look like --key=value"),
    (["--lr"], "expected one argument"),
    (["--num_image=4"], "unknown option --num_image; valid options"),  # train.py has no num_images
    (["--batch=4"], "did you mean --batch_size?"),
    (["--preset=vae", "--condition=class"], "an autoencoder (backbone=vae) takes no condition"),
    (["--preset=cpu", "--short_captions=0.2"], "short_captions shortens captions: it needs condition=text"),
    (["--preset=prompt", "--short_captions=1.5"], "short_captions must be in .0, 1., got 1.5"),
])
def test_bad_overrides_are_rejected(argv, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        parse(argv)


def test_unknown_key_says_what_was_meant():
    with pytest.raises(UserError, match="unknown option --learning_rate; valid options: .*--lr"):
        parse(["--learning_rate=1"])
    with pytest.raises(UserError, match=r"did you mean --max_steps\?"):
        parse(["--max_step=1"])


def test_abbreviations_are_not_guessed():
    with pytest.raises(UserError, match="unknown option --ba"):
        parse(["--ba=4"])


def test_json_round_trip_and_the_legacy_flat_config(tmp_path):
    cfg = parse(["--preset=smoke", "--condition=class"])
    config.save(cfg, tmp_path / "c.json")
    assert config.load(tmp_path / "c.json") == cfg
    data = json.loads((tmp_path / "c.json").read_text())
    data["run"]["bogus"] = 1
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="RunSpec has no keys bogus"):
        config.load(tmp_path / "c.json")
    flat = {**config.to_dict(cfg)["model"], **config.to_dict(cfg)["run"]}
    del flat["condition"], flat["text_inputs"]
    old = config.config_from_dict({**flat, "conditional": False, "prompts": "cross"})
    assert (old.model.condition, old.model.text_inputs) == ("text", "cross")


def test_a_script_leaves_its_objects_to_the_system_at_exit():
    """Every script imports config, which freezes the heap at exit: Python's last garbage collection
    then skips torch's and diffusers' objects (RESULTS.md: *A fourteenth session*)."""
    import subprocess
    import sys
    code = "import atexit, gc, config; atexit._run_exitfuncs(); print(gc.get_freeze_count())"
    out = subprocess.run([sys.executable, "-c", code], cwd=config.ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert int(out) > 1000
