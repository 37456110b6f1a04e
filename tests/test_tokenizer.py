"""onnxstream.tokenizer.CLIPTokenizer must give the same ids as transformers' CLIPTokenizer.

The vocabulary is built from OpenAI's original BPE merges (shipped in the open_clip wheel),
the way CLIP builds it, and both tokenizers read the same files.
"""

import gzip
import json
import os
import random
import subprocess
import sys
import unicodedata
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from onnxstream.tokenizer import BYTE_TO_CHAR, CLIPTokenizer, normalize, split_words

transformers = pytest.importorskip("transformers")

MAX_LENGTH = 77
CACHE_DIR = Path(os.environ.get("ONNXSTREAM_TEST_CACHE", Path.home() / ".cache" / "onnxstream-tests"))
MERGES_GZ = "open_clip/bpe_simple_vocab_16e6.txt.gz"


def added_token(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
            "rstrip": False, "single_word": False}


# Same shape as the tokenizer_config.json of runwayml SD 1.5 and stabilityai SD 2.1.
SD15_CONFIG = {
    "add_prefix_space": False, "bos_token": added_token("<|startoftext|>"), "do_lower_case": True,
    "eos_token": added_token("<|endoftext|>"), "errors": "replace", "model_max_length": 77,
    "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer", "unk_token": added_token("<|endoftext|>"),
}
SD21_CONFIG = {**SD15_CONFIG, "pad_token": "!"}


# ---------------------------------------------------------------------------------------------
# vocabulary files


def original_merges_gz():
    """CLIP's bpe_simple_vocab_16e6.txt.gz, taken out of the open_clip wheel (downloaded, not installed)."""
    gz = CACHE_DIR / "bpe_simple_vocab_16e6.txt.gz"
    if gz.exists():
        return gz
    wheel_dir = CACHE_DIR / "wheels"
    wheels = sorted(wheel_dir.glob("open_clip_torch-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "open_clip_torch", "-d", str(wheel_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(wheel_dir.glob("open_clip_torch-*.whl"))
        if result.returncode != 0 or not wheels:
            pytest.skip(f"pip could not download open_clip_torch for CLIP's merges file: {result.stderr[-500:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        data = wheel.read(MERGES_GZ)
    gz.parent.mkdir(parents=True, exist_ok=True)
    gz.write_bytes(data)
    return gz


def clip_byte_chars():
    """CLIP's bytes_to_unicode() values, in its order: printable bytes first, then the rest shifted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(rest))]


def write_vocab_files(gz, folder, config=None):
    """vocab.json + merges.txt as CLIP builds them (see open_clip's SimpleTokenizer)."""
    lines = gzip.open(gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    byte_chars = clip_byte_chars()
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False),
                                       encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                       encoding="utf-8")
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    gz = original_merges_gz()
    root = tmp_path_factory.mktemp("clip_tokenizer")
    return {
        "plain": write_vocab_files(gz, root / "plain"),
        "sd15": write_vocab_files(gz, root / "sd15", SD15_CONFIG),
        "sd21": write_vocab_files(gz, root / "sd21", SD21_CONFIG),
    }


def reference_tokenizer(folder, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "plain":  # straight from the two files, as CLIPTokenizer(vocab_file, merges_file)
            return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
        return transformers.CLIPTokenizer.from_pretrained(str(folder))  # reads tokenizer_config.json


def reference_ids(tokenizer, texts):
    out = tokenizer(list(texts), padding="max_length", max_length=MAX_LENGTH, truncation=True)
    return out["input_ids"]


def encode_quietly(tokenizer, texts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [tokenizer.encode(t) for t in texts]


# ---------------------------------------------------------------------------------------------
# corpus

SD_PROMPTS = [
    "a photo of an astronaut riding a horse on mars",
    "A beautiful sunset over the ocean, highly detailed, 8k, trending on artstation",
    "portrait of a young woman, oil painting, by Rembrandt, dramatic lighting",
    "cyberpunk city at night, neon lights, rain, reflections, blade runner style",
    "(masterpiece:1.2), best quality, ultra-detailed, 1girl, solo, looking at viewer",
    "((extremely detailed)), [[blurry]], (worst quality:1.4), lowres, bad anatomy",
    "a cute corgi wearing a tiny wizard hat, digital art",
    "An isometric view of a cozy cabin in the woods, low poly, blender render",
    "Steampunk airship flying over Victorian London, matte painting, concept art",
    "a bowl of ramen, food photography, 50mm, f/1.8, bokeh",
    "watercolor painting of a fox in a snowy forest",
    "hyperrealistic close-up of a hummingbird drinking nectar, macro lens",
    "the Eiffel Tower made of chocolate, studio lighting, 3D render, octane",
    "a medieval knight in shining armor, fantasy, D&D character art",
    "Studio Ghibli style landscape with rolling hills and a small village",
    "a red sports car drifting on a mountain road, motion blur, 4K HDR",
    "an old man with a long white beard, charcoal sketch, high contrast",
    "a futuristic robot tending a zen garden, soft morning light",
    "ukiyo-e woodblock print of Mount Fuji and a great wave",
    "Pixel art of a dragon guarding treasure, 16-bit, SNES style",
    "a cat sitting on a windowsill, rainy day, cinematic, moody",
    "Photorealistic render of an alien jungle planet with two moons",
    "minimalist logo of a mountain and the sun, vector, flat design",
    "an astronaut's helmet reflecting the Earth, ultra HD",
    "closeup portrait, freckles, green eyes, natural light, Canon EOS R5",
    "Art Nouveau poster of a woman with flowers in her hair, Alphonse Mucha",
    "the interior of a gothic cathedral, volumetric light rays, dust particles",
    "a lighthouse on a cliff during a storm, crashing waves, dramatic sky",
    "low angle shot of skyscrapers, fisheye lens, black and white",
    "A bustling Tokyo street market at dusk, lanterns, people, vibrant colors",
    "a tiny house built inside a glass bottle, tilt-shift photography",
    "vintage 1950s advertisement for a flying car",
    "a dog's nose, extreme macro, shallow depth of field",
    "cinematic still of a samurai standing in a bamboo forest, fog",
    "infographic of the water cycle, clean, educational illustration",
    "an elven city built into giant trees, fantasy concept art, by Greg Rutkowski",
    "surreal melting clocks in a desert, in the style of Salvador Dalí",
    "portrait of Ada Lovelace as a cyborg, intricate, elegant, sharp focus",
    "a cup of coffee with latte art shaped like a heart, top-down view",
    "abandoned amusement park overgrown with plants, post-apocalyptic",
    "low quality, blurry, jpeg artifacts, watermark, text, signature",
    "a koi pond in autumn, maple leaves floating on the water, 35mm film",
    "A majestic lion with a mane of fire, digital painting, artstation HQ",
    "children's book illustration of a bear having a picnic",
    "a spaceship interior, sci-fi corridor, Unreal Engine 5, ray tracing",
    "street photography, Paris, 1960s, Leica, Kodak Tri-X 400",
    "a snowy mountain village at Christmas, warm window lights, cozy",
    "close up of a dew drop on a spider web at sunrise",
    "the ancient library of Alexandria, scrolls, candles, warm tones",
    "a golden retriever puppy playing in the snow, high-speed photo 1/4000s",
    "an underwater city with bioluminescent coral, deep sea, mysterious",
    "Mona Lisa but she's a robot, oil on canvas",
]

WORDS = ("photo portrait cat dog castle forest city night sunset ocean mountain river dragon knight robot "
         "astronaut flower garden painting sketch render detailed realistic cinematic lighting colorful dark "
         "vintage futuristic beautiful epic tiny giant ancient neon golden crystal shadow reflection texture "
         "hyperrealistic masterpiece artstation octane unreal bokeh photography illustration concept the a of "
         "and in on with by from under over between").split()

UNICODE_WORDS = [
    "café", "naïve", "Ångström", "Zürich", "façade", "crème brûlée", "jalapeño", "Ærøskøbing", "Straße",
    "STRASSE ẞ", "ŒUVRE", "İstanbul", "ıi", "ǅemal", "ﬁne ﬂow", "Kelvin\u212a", "\u2126hm", "e\u0301te",
    "n\u0303", "a\u0308\u0301", "Z\u0351\u0334a\u0352l\u0360g\u0489o", "ο\u0301", "猫", "東京タワー",
    "日本語の文章", "中文提示词，高清", "한국어 프롬프트", "ひらがな", "カタカナ", "ｶﾀｶﾅ", "🐱", "👍🏽", "👨‍👩‍👧",
    "🇯🇵🇫🇷", "❤️", "🔥🔥🔥", "😀😃", "🏳️‍🌈", "Москва", "ПРИВЕТ мир", "Ёлка", "Ελλάδα", "ΣΟΦΙΑ", "ΟΔΟΣ ΣΑΣ",
    "ς σ Σ", "ΐ", "x²", "m³", "¹²³", "H₂O", "½ ¾", "Ⅻ ⅻ", "①②", "٣٤٥", "१२३", "ＡＢＣ ｄｅｆ", "１２３", "！？",
    "𝐀𝐁𝐂", "𝟘𝟙", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ℌ", "العربية", "עִבְרִית", "हिन्दी", "ภาษาไทย", "ქართული", "Հայերեն",
    "ꓘ", "ᏣᎳᎩ", "ʰʲ", "ª º", "µ", "ß", "ﬀ", "İİ", "ΑΣ.", "Ɐ", "ǈ", "ᾼ", "ﬓ", "Ꭓ", "\U0001d7ce",
]

PUNCT = list(",.!?;:()[]{}<>|/\\-_+=*&^%$#@~`\"'") + [
    "...", "…", "—", "–", "«", "»", "“", "”", "‘", "’", "¿", "¡", "!!!", "?!", "::", "->", "<3", ":)", "°",
    "©", "®", "™", "§", "¶", "•", "€", "£", "¥", "±", "×", "÷", "√", "∞", "≈", "★", "♥", "✓", "((", "))",
    "[[", "]]", "{{", "}}", "//", "**", "__", "~~", "--", "''", '""', "'''", "“”", "：", "，", "。", "、",
]

CONTRACTIONS = [
    "it's", "don't", "we're", "they've", "I'm", "you'll", "he'd", "IT'S", "DON'T", "We'Re", "THEY'VE",
    "'s", "''s", "'tis", "rock'n'roll", "o'clock", "cat’s", "'ll'", "x'd'", "'m'm", "'re're", "'S",
    "'sss", "''", "'", "dogs'", "'ve'll'd", "ain't", "y'all'd've", "l'amour", "'1", "'ß", "'é",
]

SPECIAL = [
    "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|EndOfText|>", "<|endoftext", "endoftext|>",
    "<||>", "!<|endoftext|>!", "<|startoftext|><|endoftext|>", "<|<|endoftext|>|>", "a<|endoftext|>b",
    "<|endoftext|>'s", "<|STARTOFTEXT|>", "＜|endoftext|＞", "<| endoftext |>",
]

SEPARATORS = [" "] * 12 + [", "] * 4 + [
    "  ", "   ", "\t", "\n", "\r\n", "\xa0", "\u2003", "\u3000", "\x1c", "\x1f", "\x85", "\u200b", "\ufeff",
    "", " \t \n ", "\x0b", "\x0c", "\u2028", "\u202f", "\u2000", "\u180e", "\u00ad", ",", " ,", "|",
]

CONTROL = ["\x00", "\x07", "\x7f", "\x1f", "\x80", "\u0300", "\u200d", "\ufffd", "\ue000", "\U0010fffd"]

# Code point ranges to draw raw random characters from (assigned ones only, see random_chars).
RANGES = [(0x20, 0x24F), (0x370, 0x52F), (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1E00, 0x1FFF),
          (0x2000, 0x2BFF), (0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xACFF), (0xFF00, 0xFFEF),
          (0x1D400, 0x1D7FF), (0x1F300, 0x1FAFF), (0x0, 0x20)]


def change_case(rng, text):
    mode = rng.randrange(6)
    if mode == 0:
        return text.upper()
    if mode == 1:
        return text.title()
    if mode == 2:
        return "".join(c.upper() if rng.random() < 0.5 else c for c in text)
    return text


def random_number(rng):
    forms = [lambda: str(rng.randrange(10)), lambda: str(rng.randrange(100000)),
             lambda: f"{rng.uniform(0, 10):.{rng.randrange(1, 4)}f}", lambda: f"{rng.randrange(1, 9)}e{rng.randrange(9)}",
             lambda: f"-{rng.randrange(1000)}", lambda: f"{rng.randrange(1, 30)}:{rng.randrange(1, 20)}",
             lambda: f"{rng.randrange(1, 9)}k", lambda: f"v{rng.randrange(3)}.{rng.randrange(10)}",
             lambda: f"({rng.choice(WORDS)}:{rng.uniform(0.5, 1.8):.1f})",
             lambda: f"{rng.randrange(1900, 2100)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"]
    return rng.choice(forms)()


def random_chars(rng):
    out, n = [], rng.randrange(1, 12)
    while len(out) < n:
        lo, hi = rng.choice(RANGES)
        c = chr(rng.randrange(lo, hi))
        if unicodedata.category(c) != "Cn":  # unassigned in this Python's Unicode; see test below
            out.append(c)
    return "".join(out)


def random_prompt(rng):
    pools = [(WORDS, 40), (UNICODE_WORDS, 15), (PUNCT, 12), (CONTRACTIONS, 8), (SPECIAL, 3), (CONTROL, 2)]
    n_parts = rng.choice([1, 1, 2, 3, 4, 6, 8, 12, 20, 35, 60, 100])
    parts = []
    for _ in range(n_parts):
        roll = rng.randrange(100)
        if roll < 80:
            pool = rng.choices([p for p, _ in pools], weights=[w for _, w in pools])[0]
            part = rng.choice(pool)
        elif roll < 90:
            part = random_number(rng)
        else:
            part = random_chars(rng)
        parts.append(change_case(rng, part) if rng.random() < 0.3 else part)
    text = parts[0]
    for part in parts[1:]:
        text += rng.choice(SEPARATORS) + part
    if rng.random() < 0.1:
        text = rng.choice(SEPARATORS) + text + rng.choice(SEPARATORS)
    return text


def make_corpus(n_random=1200, seed=20240607):
    rng = random.Random(seed)
    fixed = ["", " ", "\t\n", "\xa0\u3000", "a", "A", "!", "'s", "1234567890", "hello world", "x" * 300,
             "lorem ipsum " * 60, "a, " * 100, "🐱" * 80, "東京" * 60, ", ".join(SD_PROMPTS[:10])]
    fixed += UNICODE_WORDS + PUNCT + CONTRACTIONS + SPECIAL + CONTROL
    fixed += [s.upper() for s in SD_PROMPTS[:5]] + [s.replace(" ", "\t") for s in SD_PROMPTS[5:10]]
    return fixed + SD_PROMPTS + [random_prompt(rng) for _ in range(n_random)]


# ---------------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("kind", ["plain", "sd15", "sd21"])
def test_ids_match_transformers(folders, kind):
    corpus = make_corpus()
    assert len(corpus) >= 1000
    tokenizer = CLIPTokenizer.from_dir(folders[kind])
    ours = encode_quietly(tokenizer, corpus)
    theirs = reference_ids(reference_tokenizer(folders[kind], kind), corpus)
    mismatches = [(text, a, b) for text, a, b in zip(corpus, ours, theirs) if a != b]
    long_prompts = sum(len(tokenizer.tokenize(text)) > MAX_LENGTH - 2 for text in corpus)
    print(f"[{kind}] compared {len(corpus)} prompts ({long_prompts} truncated), {len(mismatches)} mismatches")
    assert not mismatches, "first mismatches:\n" + "\n".join(
        f"{text!r}\n  ours   {a}\n  theirs {b}" for text, a, b in mismatches[:5])


def test_every_assigned_code_point_normalizes_and_splits_alike(folders):
    """Each character alone between spaces: normalization, \\s/\\p{L}/\\p{N} classes and byte mapping."""
    backend = reference_tokenizer(folders["plain"], "plain").backend_tokenizer
    chars = [chr(i) for i in range(1, 0x110000)
             if not 0xD800 <= i < 0xE000 and unicodedata.category(chr(i)) != "Cn"]
    # NUL separators are left alone by the normalizer and keep neighbours from composing.
    ours_normalized = [normalize(c) for c in chars]
    theirs_normalized = backend.normalizer.normalize_str("\x00".join(chars)).split("\x00")
    assert len(theirs_normalized) == len(chars)
    bad = [(c, a, b) for c, a, b in zip(chars, ours_normalized, theirs_normalized) if a != b]
    assert not bad, f"normalization differs for {len(bad)} characters, e.g. {bad[:5]}"
    text = " ".join(theirs_normalized)  # spaces keep neighbours in separate pieces
    ours = ["".join(BYTE_TO_CHAR[b] for b in w.encode("utf-8")) for w in split_words(text)]
    theirs = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)]
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    assert first == len(ours) == len(theirs), f"pieces differ from #{first}: ours {ours[first:first + 3]} theirs {theirs[first:first + 3]}"


def test_pad_token_from_config(folders):
    sd15, sd21 = CLIPTokenizer.from_dir(folders["sd15"]), CLIPTokenizer.from_dir(folders["sd21"])
    assert (sd15.pad_id, sd21.pad_id) == (49407, 0)
    assert CLIPTokenizer.from_dir(folders["plain"]).pad_id == 49407  # no config: pad with EOS
    for text in ["a cat", "wow!!! a cat! <|ENDOFTEXT|>", ""]:
        ids = sd21.encode(text)
        n = len(sd21.tokenize(text)) + 2
        assert ids[0] == 49406 and ids[n - 1] == 49407 and ids[n:] == [0] * (MAX_LENGTH - n)
        assert ids == reference_ids(reference_tokenizer(folders["sd21"], "sd21"), [text])[0]
        n = len(sd15.tokenize(text)) + 2  # differs: SD2's "!" is a special token, split off alone
        assert sd15.encode(text)[n - 1:] == [49407] * (MAX_LENGTH - n + 1)


def test_special_tokens_map_overrides_config(folders, tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        (folder / name).write_bytes((folders["sd15"] / name).read_bytes())
    (folder / "special_tokens_map.json").write_text(json.dumps({"pad_token": "!"}))
    reference = reference_tokenizer(folder, "sd")
    assert CLIPTokenizer.from_dir(folder).pad_id == reference.pad_token_id == 0


def test_long_prompt_is_truncated_with_warning(folders):
    tokenizer = CLIPTokenizer.from_dir(folders["sd15"])
    text = ", ".join(SD_PROMPTS[:8])
    n_tokens = len(reference_tokenizer(folders["sd15"], "sd15")(text)["input_ids"])
    assert n_tokens > MAX_LENGTH
    with pytest.warns(UserWarning, match=rf"last {n_tokens - MAX_LENGTH} tokens were dropped"):
        ids = tokenizer.encode(text)
    assert len(ids) == MAX_LENGTH and ids[-1] == 49407
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenizer.encode(SD_PROMPTS[0])  # short prompts do not warn


def test_encode_batch(folders):
    tokenizer = CLIPTokenizer.from_dir(folders["sd15"])
    texts = SD_PROMPTS[:3]
    batch = tokenizer.encode_batch(texts)
    assert batch.shape == (3, MAX_LENGTH) and batch.dtype == np.int64
    assert batch.tolist() == [tokenizer.encode(t) for t in texts]
    assert tokenizer.encode_batch([]).shape == (0, MAX_LENGTH)
