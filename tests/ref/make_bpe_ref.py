#!/usr/bin/python3
"""Reference encodings for the CLIP BPE tokenizer (tests/test_bpe.c).

A re-implementation of open_clip's SimpleTokenizer written from its
description of CLIP's tokenizer (bytes_to_unicode, html-unescape twice, whitespace
collapse, lower-case, the pre-tokenizer regex, BPE by merge rank, 77-context
truncation with the last id the end token) — without ftfy, which vlp does not
replicate. It first checks itself against "a photo of a cat" → 49406 320 1125
539 320 2368 49407, then writes
tests/ref/bpe_ref.tsv: one line per text, "<escaped text>\\t<ids>", ids
padded to 77 as open_clip.tokenize returns them.

usage: /usr/bin/python3 tests/ref/make_bpe_ref.py [MERGES.gz] [OUT.tsv]
"""
import gzip
import html
import os
import random
import re
import sys

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
MERGES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../vocab/bpe_simple_vocab_16e6.txt.gz")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "bpe_ref.tsv")
CTX = 77


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class Tokenizer:
    def __init__(self, path):
        self.byte_encoder = bytes_to_unicode()
        raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
        merges = raw.decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges[1:49152 - 256 - 2 + 1]]
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.ranks = dict(zip(merges, range(len(merges))))
        self.special = {"<start_of_text>", "<end_of_text>"}
        self.pat = regex.compile(r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                                 regex.IGNORECASE)
        self.sot, self.eot = self.encoder["<start_of_text>"], self.encoder["<end_of_text>"]

    def bpe(self, token):
        if token in self.special:
            return [token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(self, text):
        text = html.unescape(html.unescape(text)).strip()
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for tok in regex.findall(self.pat, text):
            if tok not in self.special:
                tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(tok))
        return ids

    def tokenize(self, text, ctx=CTX):
        ids = [self.sot] + self.encode(text) + [self.eot]
        if len(ids) > ctx:
            ids = ids[:ctx]
            ids[-1] = self.eot
        return ids + [0] * (ctx - len(ids))


def texts():
    fixed = [
        "a photo of a cat", "A Photo Of A CAT!", "", "   ", "hello,world", "it's the dog's ball; they're here, we've gone, I'm ok, you'll see, he'd go",
        "IT'S SHOUTING'S", "3.14159 and 42 apples, 1,000,000 dollars", "2024-11-22 12:30:45", "e-mail: someone@example.com",
        "https://example.com/path?x=1&y=2", "&amp; &lt;tag&gt; &quot;q&quot; &#39;s &#x263A; &amp;amp;lt; &copy; &eacute;",
        "café naïve résumé crème brûlée", "Ångström Øresund Straße ÉCOLE", "東京タワーの写真", "北京 上海 广州", "한국어 텍스트",
        "Ελληνικά και Русский текст", "مرحبا بالعالم", "emoji 😀🎉👍🏽 and ❤️ hearts", "flag 🇯🇵 family 👨‍👩‍👧",
        "tabs\tand\nnewlines\r\n  and   spaces", "non\u00a0breaking\u3000ideographic\u2003em", "<start_of_text>inside<end_of_text> text",
        "!!!???...---***", "$100 €50 £30 ¥1000", "C++ / C# / F#", "snake_case and camelCase and kebab-case",
        "x" * 300, "word " * 100, "a" + "b" * 50, "the quick brown fox jumps over the lazy dog " * 5,
        "invalid \udcff surrogate-free text", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", "ǅ ǈ ǋ titlecase", "İstanbul ıi",
        "zero\u200bwidth", "mixed123numbers456", "½ ⅓ ² ³ Ⅻ", "don't won't can't shan't", "'quoted' \"double\"",
    ]
    fixed = [t for t in fixed if "\udcff" not in t]
    rnd = random.Random(1234)
    alphabet = list("abcdefghijklmnopqrstuvwxyz    ABCXYZ0123456789.,!?'\"-_()&;#@:/") + ["é", "ü", "ß", "日", "本", "😀", "ñ", "ø"]
    for _ in range(300):
        n = rnd.randint(1, 120)
        fixed.append("".join(rnd.choice(alphabet) for _ in range(n)))
    return fixed


def escape(t):
    return t.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def main():
    tok = Tokenizer(MERGES)
    got = [i for i in tok.tokenize("a photo of a cat") if i]
    want = [49406, 320, 1125, 539, 320, 2368, 49407]
    assert got == want, f"reference tokenizer disagrees with the known ids of 'a photo of a cat': {got}"
    with open(OUT, "w", encoding="utf-8") as f:
        for t in texts():
            f.write(escape(t) + "\t" + " ".join(map(str, tok.tokenize(t))) + "\n")
    print(f"wrote {len(texts())} reference encodings to {OUT} (self-check against 'a photo of a cat' passed)")


if __name__ == "__main__":
    main()
