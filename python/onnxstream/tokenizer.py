"""Pure-Python CLIP BPE tokenizer (stdlib + numpy), for boards without transformers.

Reproduces transformers' CLIPTokenizer (tokenizers backend):
  added (special) tokens are cut out first, the rest is normalized
  (NFC, whitespace runs -> " ", lower-case), split with CLIP's pattern
  <\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+
  then each piece is mapped byte -> unicode char and BPE-merged with a "</w>"
  suffix on its last symbol. Output: BOS + ids + EOS, truncated and padded.
"""

import json
import os
import re
import unicodedata
import warnings

import numpy as np

# Oniguruma's \s (Unicode White_Space). Python's \s also matches \x1c-\x1f, which onig treats as
# ordinary symbols, so spell the set out.
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
WHITESPACE_RUN = re.compile(f"[{WHITESPACE}]+")
IS_WHITESPACE = re.compile(f"[{WHITESPACE}]")

# The literal alternatives of the CLIP pattern; they win over the class runs when they match.
LITERALS = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d")
# Runs over a string of class letters: L = \p{L}, N = \p{N}, P = anything else that is not space.
CLASS_RUNS = re.compile(r"L+|N|P+")


def bytes_to_unicode():
    """GPT-2/CLIP byte -> printable char table (printable latin-1 bytes map to themselves)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, shifted = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()


def normalize(text):
    """NFC, whitespace runs -> one space, per-char lower-casing (as the Rust normalizers do)."""
    text = unicodedata.normalize("NFC", text)
    text = WHITESPACE_RUN.sub(" ", text)
    # str.lower() turns a word-final capital sigma into final 'ς'; Rust lower-cases char by char
    # and always gives 'σ'. Lower-casing 'Σ' first removes the context rule.
    return text.replace("\u03a3", "\u03c3").lower()


def char_class(c):
    if IS_WHITESPACE.match(c):
        return " "
    cat = unicodedata.category(c)[0]
    return cat if cat in "LN" else "P"


def split_words(text):
    """Pieces the CLIP regex finds in normalized text; everything between them (spaces) is dropped."""
    classes = "".join(map(char_class, text))
    words, i = [], 0
    while i < len(text):
        m = LITERALS.match(text, i) or CLASS_RUNS.match(classes, i)
        if m is None:  # whitespace separates pieces and is not kept
            i += 1
            continue
        word = text[i:m.end()]
        i = m.end()
        if word in ("<|startoftext|>", "<|endoftext|>"):
            # The ByteLevel pre-tokenizer re-splits with the GPT-2 pattern, which cuts these
            # (here: not recognised as special tokens, e.g. typed in upper case) into 3 pieces.
            words += ["<|", word[2:-2], "|>"]
        else:
            words.append(word)
    return words


def token_spec(value):
    """A special token from a HF config: either a string or an AddedToken dict -> (content, normalized)."""
    if isinstance(value, dict):
        return value["content"], bool(value.get("normalized", False))
    return value, False


def added_pattern(contents):
    # Longest first so the alternation behaves like leftmost-longest matching.
    contents = sorted((c for c in contents if c), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, contents))) if contents else None


def split_added(text, pattern):
    """Yield (added_token, "") for each match of `pattern` and (None, text) for the text between."""
    start = 0
    for m in pattern.finditer(text) if pattern is not None else ():
        if m.start() > start:
            yield None, text[start:m.start()]
        yield m.group(), ""
        start = m.end()
    if start < len(text):
        yield None, text[start:]


def read_vocab_files(path):
    """vocab (token -> id) and merges (pairs in rank order) from vocab.json + merges.txt."""
    with open(os.path.join(path, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(path, "merges.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return vocab, [tuple(line.split(" ")) for line in lines if line]


def read_tokenizer_json(path):
    """vocab, merges and added tokens {content: (id, normalized)} from a tokenizers' tokenizer.json."""
    file = os.path.join(path, "tokenizer.json")
    if not os.path.exists(file):
        raise ValueError(f"tokenizer folder {path} has neither vocab.json + merges.txt nor tokenizer.json")
    with open(file, encoding="utf-8") as f:
        data = json.load(f)
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise ValueError(f"{file} is not a BPE tokenizer (model type {model.get('type')!r})")
    # merges are "a b" strings in older files and [a, b] lists in newer ones
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    added = {t["content"]: (int(t["id"]), bool(t.get("normalized", False))) for t in data.get("added_tokens", [])}
    return model["vocab"], merges, added


def write_vocab_files(tokenizer_dir, out_dir):
    """Write vocab.json + merges.txt (the files the board reads) from a tokenizer folder of either kind."""
    if os.path.exists(os.path.join(tokenizer_dir, "vocab.json")):
        vocab, merges = read_vocab_files(tokenizer_dir)
    else:
        vocab, merges, _ = read_tokenizer_json(tokenizer_dir)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


class CLIPTokenizer:
    def __init__(self, vocab, merges, bos="<|startoftext|>", eos="<|endoftext|>", pad=None, unk=None,
                 added_tokens=None, max_length=77):
        """vocab: token -> id; merges: list of (left, right) in rank order.
        bos/eos/pad/unk: str or (content, normalized). added_tokens: {content: (id, normalized)}."""
        self.vocab = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.max_length = max_length
        self.cache = {}

        specs = {name: value if isinstance(value, tuple) else (value, False)
                 for name, value in (("unk", unk), ("bos", bos), ("eos", eos), ("pad", pad)) if value is not None}
        self.bos_id, self.eos_id = vocab[specs["bos"][0]], vocab[specs["eos"][0]]
        self.pad_id = vocab.get(specs.get("pad", specs["eos"])[0], self.eos_id)
        self.unk_id = vocab.get(specs.get("unk", specs["eos"])[0], self.eos_id)

        # Added tokens (specials included) are matched whole before BPE, either in the raw text or,
        # when flagged "normalized", in the normalized text. Their id is the vocab id if they have one.
        entries = dict(added_tokens or {})  # content -> (id, normalized)
        for content, normalized in specs.values():  # later specials override earlier flags
            entries[content] = (entries.get(content, (None,))[0], normalized)
        self.added_ids, raw, normed = {}, [], []
        for content, (token_id, normalized) in entries.items():
            token_id = vocab.get(content, token_id)
            if token_id is None:
                continue
            if normalized:
                content = normalize(content)
            self.added_ids[content] = token_id
            (normed if normalized else raw).append(content)
        self.raw_added = added_pattern(raw)
        self.normalized_added = added_pattern(normed)

    @classmethod
    def from_dir(cls, path, max_length=None):
        """Load a diffusers/HF `tokenizer/` folder (vocab.json, merges.txt, optional configs)."""
        def read_json(name):
            file = os.path.join(path, name)
            if not os.path.exists(file):
                return {}
            with open(file, encoding="utf-8") as f:
                return json.load(f)

        config = read_json("tokenizer_config.json")
        added = {}
        if os.path.exists(os.path.join(path, "vocab.json")):
            vocab, merges = read_vocab_files(path)
            if os.path.exists(os.path.join(path, "tokenizer.json")):  # its added tokens' flags win, as in transformers
                added = read_tokenizer_json(path)[2]
        else:  # transformers 5 may save only tokenizer.json
            vocab, merges, added = read_tokenizer_json(path)
        if "added_tokens_decoder" in config:
            # Newer configs list the added tokens with their flags; transformers then ignores the map.
            for token_id, spec in config["added_tokens_decoder"].items():
                added[spec["content"]] = (int(token_id), bool(spec.get("normalized", False)))
        else:
            config.update(read_json("special_tokens_map.json"))  # the map overrides the config
        names = {}
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            if config.get(key) is not None:
                content, normalized = token_spec(config[key])
                if content in added:
                    normalized = added[content][1]
                names[key] = (content, normalized)
        if max_length is None:
            max_length = config.get("model_max_length", 77)
            if not isinstance(max_length, int) or max_length > 4096:  # "unlimited" sentinel values
                max_length = 77
        return cls(vocab, merges, bos=names.get("bos_token", "<|startoftext|>"),
                   eos=names.get("eos_token", "<|endoftext|>"), pad=names.get("pad_token"),
                   unk=names.get("unk_token"), added_tokens=added, max_length=max_length)

    def bpe(self, word):
        """Ids for one pre-tokenized piece (already byte-mapped)."""
        if word in self.cache:
            return self.cache[word]
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = set(zip(symbols, symbols[1:]))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(symbols):  # merge every occurrence, left to right
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids = [self.vocab.get(s, self.unk_id) for s in symbols]
        if len(self.cache) > 50_000:  # bound memory on small boards
            self.cache.clear()
        self.cache[word] = ids
        return ids

    def tokenize(self, text):
        """Token ids of `text` without BOS/EOS, truncation or padding."""
        ids = []
        for token, raw_part in split_added(text, self.raw_added):
            if token is not None:
                ids.append(self.added_ids[token])
                continue
            for token, part in split_added(normalize(raw_part), self.normalized_added):
                if token is not None:
                    ids.append(self.added_ids[token])
                    continue
                for word in split_words(part):
                    ids += self.bpe("".join(BYTE_TO_CHAR[b] for b in word.encode("utf-8")))
        return ids

    def encode(self, text):
        """BOS + ids + EOS, truncated to max_length (EOS kept last) and padded with the pad id."""
        ids = self.tokenize(text)
        room = self.max_length - 2
        if len(ids) > room:
            warnings.warn(f"prompt is too long for CLIP ({len(ids) + 2} > {self.max_length} tokens); "
                          f"the last {len(ids) - room} tokens were dropped", stacklevel=2)
            ids = ids[:room]
        ids = [self.bos_id] + ids + [self.eos_id]
        return ids + [self.pad_id] * (self.max_length - len(ids))

    def encode_batch(self, texts):
        return np.array([self.encode(t) for t in texts], dtype=np.int64).reshape(len(texts), self.max_length)
