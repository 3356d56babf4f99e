import json

import pytest

import config
from config import UserError, parse_args


def parse(argv):
    return parse_args(argv, "doc")[0]


def test_overrides_are_typed():
    cfg = parse(["--preset=smoke", "--lr=3e-4", "--block_out_channels=32,64",
                 "--conditional", "--flip_p=0", "--run_name=x"])
    assert cfg.lr == 3e-4 and cfg.block_out_channels == (32, 64)
    assert cfg.conditional is True and cfg.flip_p == 0.0 and cfg.run_name == "x"


def test_keyword_overrides_replace_preset_values():
    cfg = config.preset("cpu", max_steps=5, lr=1e-3)
    assert cfg.max_steps == 5 and cfg.lr == 1e-3 and cfg.channels == 4  # the rest of the preset stays


def test_seed_preset_is_the_reference_setup():
    import train
    from model import build_scheduler
    cfg = parse([])
    assert cfg.block_out_channels == (64, 128, 256) and cfg.layers_per_block == 2
    assert cfg.down_block_types == ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D")
    assert config.up_block_types(cfg) == ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D")
    s = build_scheduler(cfg).config
    assert (s.num_train_timesteps, s.beta_start, s.beta_end, s.beta_schedule) == (1000, 1e-4, 0.02,
                                                                                 "linear")
    assert (cfg.lr, cfg.batch_size, cfg.max_steps, config.EPOCHS) == (1e-4, 16, 0, 500)
    assert (cfg.channels, cfg.flip_p, cfg.prediction_type) == (3, 0.5, "epsilon")
    assert train.EPOCHS * 346 // 16 + 1 == 10813  # 500 epochs of the shipped icons at batch 16


@pytest.mark.parametrize("argv, message", [
    (["--nope=1"], "unknown option --nope; valid options: "),
    (["--lr=abc"], "--lr takes a number"),
    (["--conditional=maybe"], "takes true or false"),
    (["--batch_size=1.5"], "--batch_size takes an integer"),
    (["--lr=-1"], "lr must be positive"),
    (["--image_size=30"], "not divisible by 4"),
    (["--preset=huge"], "unknown preset 'huge'"),
    (["--channels=2"], "channels must be 3"),
    (["--beta_schedule=cubic"], "beta_schedule must be one of"),
    (["--background=red"], "not a colour"),
    (["lr=1"], "arguments look like --key=value"),
    (["--lr"], "expected one argument"),
])
def test_bad_overrides_are_rejected(argv, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        parse(argv)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(UserError) as e:
        parse(["--learning_rate=1"])
    assert "--lr" in str(e.value) and "--preset" in str(e.value)


def test_abbreviations_are_not_guessed():
    with pytest.raises(UserError, match="unknown option --ba"):
        parse(["--ba=4"])


def test_json_round_trip(tmp_path):
    cfg = parse(["--preset=smoke", "--conditional"])
    config.save(cfg, tmp_path / "c.json")
    assert config.load(tmp_path / "c.json") == cfg
    data = json.loads((tmp_path / "c.json").read_text())
    data["bogus"] = 1
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="unknown keys: bogus"):
        config.load(tmp_path / "c.json")
