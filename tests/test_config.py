import json

import pytest

import config
from config import UserError, parse_args


def test_overrides_are_typed():
    cfg = parse_args(["--preset=smoke", "--lr=3e-4", "--block_out_channels=32,64",
                      "--conditional", "--flip_p=0", "--run_name=x"])
    assert cfg.lr == 3e-4 and cfg.block_out_channels == (32, 64)
    assert cfg.conditional is True and cfg.flip_p == 0.0 and cfg.run_name == "x"


def test_keyword_overrides_replace_preset_values():
    cfg = config.preset("cpu", max_steps=5, lr=1e-3)
    assert cfg.max_steps == 5 and cfg.lr == 1e-3 and cfg.channels == 4  # the rest of the preset stays


def test_seed_preset_is_the_reference_setup():
    cfg = parse_args([])
    assert cfg.block_out_channels == (64, 128, 256) and cfg.layers_per_block == 2
    assert cfg.down_block_types == ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D")
    assert config.up_block_types(cfg) == ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    assert (cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end) == (1000, 1e-4, 0.02)
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs) == ("adam", 1e-4, 16, 500)
    assert (cfg.image_size, cfg.channels, cfg.flip_p) == (32, 3, 0.5)


@pytest.mark.parametrize("argv, message", [
    (["--nope=1"], "unknown option --nope; valid options: "),
    (["--lr=abc"], "--lr takes a number"),
    (["--conditional=maybe"], "takes true or false"),
    (["--batch_size=1.5"], "--batch_size takes an integer"),
    (["--lr=-1"], "lr must be positive"),
    (["--image_size=30"], "not divisible by 4"),
    (["--preset=huge"], "unknown preset 'huge'"),
    (["--channels=2"], "channels must be 3"),
    (["--sampler=euler"], "sampler must be one of"),
    (["--background=red"], "not a colour"),
    (["lr=1"], "arguments look like --key=value"),
])
def test_bad_overrides_are_rejected(argv, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        parse_args(argv)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(UserError) as e:
        parse_args(["--learning_rate=1"])
    assert "--lr" in str(e.value) and "--preset" in str(e.value)


def test_json_round_trip(tmp_path):
    cfg = parse_args(["--preset=smoke", "--conditional"])
    config.save(cfg, tmp_path / "c.json")
    assert config.load(tmp_path / "c.json") == cfg
    data = json.loads((tmp_path / "c.json").read_text())
    data["bogus"] = 1
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="unknown keys: bogus"):
        config.load(tmp_path / "c.json")
