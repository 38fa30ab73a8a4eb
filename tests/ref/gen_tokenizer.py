#!/usr/bin/env python3
"""gen_tokenizer.py — goldens for lib/text/clip_tokenizer (run in .venv-ref).

Reference: transformers' SLOW CLIPTokenizer (4.57.6) on its path without ftfy
(ftfy is importable in .venv-ref because open_clip pulls it in; it is blocked
here and the BasicTokenizer path is asserted).

Writes tests/ref/golden/tokenizer/:
  corpus.jsonl   {"cat": CATEGORY, "text": CAPTION}, one per line (>= 1000, deterministic)
  ids.jsonl      per caption: {"sd1": input_ids} (bos + all text ids + eos, untruncated),
                 "sd2" only where it differs, "tiny": sha256[:16] of the tiny-vocab ids
  variants.json  for the directories of tests/fixtures/tokenizer_variants.py (added tokens,
                 legacy special_tokens_map.json / added_tokens.json, model_max_length 16, CRLF
                 merges, no config): special ids, ids of its captions, a hash over the corpus ids
  unicode.json   per code point, how the reference treats it (normalization, whitespace,
                 regex class, Cased / Case_Ignorable, str.lower), as ranges and maps
  summary.json   versions, counts, and the slow-vs-fast (Rust) tokenizer difference counts

The SD encoding (padding="max_length", max_length=77, truncation=True) is
checked here to equal bos + ids[1:-1][:75] + eos + pad for every caption, so
the committed untruncated ids determine it.
"""
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

sys.modules["ftfy"] = None  # noqa: E402 — force the reference's non-ftfy path
import regex  # noqa: E402
import transformers  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "ref", "golden", "tokenizer")
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import make_tiny_tokenizer  # noqa: E402
import tokenizer_variants  # noqa: E402

MAX_LEN = 77


# --------------------------------------------------------------------------
# corpus


def corpus():
    rng = random.Random(20240601)
    C = []

    def add(cat, text):
        C.append((cat, text))

    # spec vectors (sd_spec.md §4)
    for t in ["a photo of a cat", "a photo of a dog", "Hello, world!", "A PHOTO of  a Cat!", "",
              "A painting of a squirrel eating a burger", "an astronaut riding a horse on mars",
              "a photograph of an astronaut riding a horse"]:
        add("spec", t)

    # templated English captions
    adjs = ["red", "small", "Fluffy", "ANCIENT", "futuristic", "wet", "golden", "blue-eyed", "hand-drawn",
            "low-poly", "cyberpunk", "minimalist", "vintage", "8-bit", "hyper-realistic", "cozy", "rusty"]
    nouns = ["cat", "dog", "castle", "robot", "forest", "city skyline", "bowl of ramen", "sports car", "portrait",
             "mountain lake", "spaceship", "teddy bear", "lighthouse", "dragon", "bicycle", "croissant", "owl"]
    preps = ["on a table", "in the rain", "at sunset", "under the sea", "in a field of flowers", "on Mars",
             "next to a window", "in Tokyo", "during winter", "by the river", "in the style of Van Gogh"]
    styles = ["trending on artstation", "4k", "8K UHD", "highly detailed", "octane render", "35mm film",
              "f/1.8", "bokeh", "by greg rutkowski", "studio lighting", "unreal engine 5", "HDR"]
    for _ in range(260):
        t = f"{rng.choice(['a', 'A', 'an', 'the', 'The', 'two', '3'])} {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(preps)}"
        if rng.random() < 0.6:
            t += rng.choice([", ", ". ", "; ", " - ", " | "]) + ", ".join(rng.sample(styles, rng.randint(1, 4)))
        if rng.random() < 0.2:
            t = t.upper()
        elif rng.random() < 0.2:
            t = t.title()
        if rng.random() < 0.3:
            t += rng.choice(["!", "?", "...", "!!", "?!", " :)", " ;-)", ".", " #art", " @user"])
        add("english", t)

    # contractions, apostrophes, case
    for t in ["it's a cat's toy", "IT'S A CAT'S TOY", "'S 'LL 'RE 'VE 'M 'D 'T", "'s'll're've'm'd't",
              "they'll've been", "THEY'LL", "I'M HERE", "we've WE'VE We'Ve", "you're YOU'RE", "she'd SHE'D",
              "don't DON'T Don'T", "rock'n'roll", "O'Neil's pub", "'tis the season", "y'all'd've",
              "it’s curly (U+2019)", "it‘s", "its' plural'", "''double''", "'", "''", "'''s", "x's", "X'S",
              "'ſ long s", "IT'ſ", "'Ｓ fullwidth", "ˈstress", "it`s", "l'été", "aujourd'hui", "C'EST LA VIE",
              "'<|endoftext|>'s", "don''t", "'1", "'Ll 'lL 'LL", "'re're", "'d'd'd", "'t's", "ma'am", "'sss"]:
        add("contractions", t)

    # punctuation, symbols, prompt syntax
    for t in ["https://example.com/a/b?c=d&e=f#g", "mail me: someone@example.org", "#nofilter #sunset",
              "$19.99 (was €25,00) – 20% off!", "1+1=2, 2*3=6, 10/2=5, 2^10=1024", "C:\\Users\\me\\Pictures",
              "(masterpiece:1.2), (best quality), [low quality:0.5]", "{red|blue|green} car", "<lora:myLora:0.8>",
              "1girl, solo, long_hair, looking_at_viewer, smile", "¯\\_(ツ)_/¯", ":-) ;-) :-( :P xD <3 </3",
              "***bold*** __under__ ~~strike~~ `code`", "...!!!???", "—– ‐ ‑ ‒ − ⁓", "«guillemets» „quotes“ ‚single‘",
              "¿Qué? ¡Sí!", "a—b–c-d", "50°C / 122°F", "© ® ™ § ¶ † ‡ • ‰ ′ ″", "→ ← ↑ ↓ ⇒ ⇔ ∀ ∃ ∈ ∑ √ ∞ ≈ ≠ ≤",
              "♠♣♥♦ ♪♫ ☀☁☂ ★☆", "<b>bold</b> <i>it</i>", "a_b-c.d:e;f", "!!!!!!!!!!!!!!!!!", "?!?!?!",
              "(((((nested)))))", "[[[x]]]", "#$%&()*+,-./:;<=>?@[\\]^_`{|}~", "\"quoted\" 'single'",
              "~~~===---___", "a/b\\c|d", "tab\tseparated\tvalues", "word.word.word", "e.g. i.e. etc.",
              "Mr. Smith & Mrs. Jones", "3:45 PM, 10/12/2023", "file_name_v2.final.PNG", "x=1; y=2;",
              "100% cotton", "#1 best", "@@@", "^_^ >_< o_O", "a!b?c.d,e"]:
        add("punct", t)

    # digits and numbers
    for t in ["1920x1080 wallpaper", "3.14159265358979", "1,000,000 dollars", "year 2024", "0123456789",
              "٠١٢٣٤٥٦٧٨٩ arabic-indic", "۰۱۲۳ persian", "०१२३ devanagari", "１２３ fullwidth", "①②③ ⑩",
              "½ ¼ ¾ ⅓", "Ⅻ ⅻ Ⅳ roman", "x² y³ z⁴ H₂O", "𝟏𝟐𝟑 math digits", "〇一二三", "১২৩", "๑๒๓ thai",
              "10th 21st 32nd 43rd", "v1.5 v2.1 SDXL 1.0", "-42 +7 ±3", "1e-4 2.5e10", "0x1F600", "#FF00AA",
              "12:30:45.678", "+1 (555) 123-4567", "ISBN 978-3-16-148410-0", "½pint", "9️⃣ keycap", "⓪⓵⓶"]:
        add("digits", t)

    # accents: composed, decomposed, reordered marks
    accented = ["café", "naïve", "résumé", "Ångström", "São Paulo", "Zürich", "Dvořák", "Łódź", "façade",
                "crème brûlée", "jalapeño", "Škoda", "Øresund", "Þórr", "Ærøskøbing", "Mötley Crüe", "Björk",
                "Ćevapi", "ÉCOLE ÉTÉ", "ÀÉÎÕÜ", "Ŵŷ", "Ḃḟṡ", "Việt Nam", "Ḥaram", "ǅemal ǈ ǋ (titlecase)",
                "ŒUVRE œuvre", "straße STRASSE ẞ", "İstanbul ıi İI", "ĲSSELMEER ĳ", "ŉ ǰ"]
    for t in accented:
        add("accents", t)
        add("accents-nfd", unicodedata.normalize("NFD", t))
        add("accents-nfkd", unicodedata.normalize("NFKD", t))
    for t in ["a\u0323\u0302 vs a\u0302\u0323", "q\u0307\u0323 q\u0323\u0307", "e\u0301\u0301 double acute",
              "o\u0308\u0304", "A\u030a \u212b \u00c5 angstrom", "\u1e9b\u0323", "x\u0301 y\u0308 z\u030c",
              "\u0301 leading mark", "a \u0301 detached", "ﬁ ﬂ ﬀ ligatures", "Ⅷ ㎏ ㍿ compat", "Ｈｅｌｌｏ",
              "ｶﾀｶﾅ halfwidth", "\u0345 alone", "\u03b1\u0345 \u1fb3 \u0391\u0345", "k\u212a kelvin K", "ſ ẛ ſt"]:
        add("accents-marks", t)
    composables = [chr(c) for c in range(0xC0, 0x2000) if len(unicodedata.normalize("NFD", chr(c))) > 1
                   and unicodedata.normalize("NFC", unicodedata.normalize("NFD", chr(c))) == chr(c)]
    for _ in range(30):
        t = "".join(rng.choice(composables) for _ in range(rng.randint(5, 25)))
        add("nfd-sweep", unicodedata.normalize("NFD", t))

    # Greek (final sigma), Cyrillic, others
    for t in ["ΟΔΟΣ", "ΟΔΟΣ ΟΔΟΣ.", "Σ", "ΣΣ", "ΑΣ", "ΑΣΑ", "ΑΣ.", "ΑΣ'Β", "Α'Σ", "Α.Σ", "ΑΣ\u0301",
              "Α\u0301Σ", "ΑΣ\u0301Β", "ΑΣ1", "1Σ", "ΑΣ-Β", "ΑΣ·Β", "ΑΣΣ", "ΣΑΣ", "ὈΔΥΣΣΕΎΣ", "ΚΑΛΗΜΕΡΑ ΚΟΣΜΕ",
              "Η ΑΘΗΝΑ ΕΙΝΑΙ ΠΟΛΗ ΤΗΣ ΕΛΛΑΔΟΣ", "ΣΟΦΟΣ", "aΣ", "ªΣ", "🄰Σ", "ʰΣ", "ⓐΣ", "ⅰΣ", "ǅΣ", "ΑΣ\u200bΒ",
              "ΑΣ\u00adΒ", "ΑΣʰ", "ΑΣ'", "ΑΣ:", "ΑΣ\u2019Β", "ΑΣⓐ", "ΑΣ🄰", "ΑΣª", "ΑΣ😀", "Σ.Σ", "AΣ", "ŁΣ",
              "ΑΣ\u0345", "ΑΣ\ufe0f", "αβγδε ΑΒΓΔΕ", "Ἀθῆναι", "ϐϑϒϓϔϕϖ", "Ϊ́ ΰ ΐ", "Москва МОСКВА москва", "Ёжик ёЁ",
              "Київ Її Ґґ Єє", "Беларусь Ўў", "Србија Ђђ Љљ Њњ Ћћ Џџ", "Հայաստան ﬓ", "საქართველო Ა", "Ⴀⴀ",
              "Ꙁꙁ old cyrillic", "ᏣᎳᎩ cherokee ꭰ", "Ⲁⲁ coptic", "𐐀𐐨 deseret", "Ｗｉｄｅ ＷＩＤＥ"]:
        add("scripts", t)
    for x in ["a", "Α", "1", " ", "'", ".", "\u0301", "ʰ", "ª", "🄰", "😀", "ǅ", "ⓐ", "Ⅰ", "\u00ad", "-", "ß"]:
        for y in ["", "a", "Β", "1", " ", "'", ".", "\u0301", "ʰ", "ⓐ", "🄰"]:
            add("sigma", f"{x}Σ{y}")

    # CJK
    zh = ["一只可爱的猫坐在窗台上", "中华人民共和国", "我爱北京天安门。", "山水画，水墨风格", "繁體中文測試：龍鳳呈祥",
          "今天天气很好，我们去公园散步吧！", "「你好」『世界』", "数字123和English混合", "𠀀𠀁𠀂 ext-B 𪜀 𫝀 𫠠 𬺰",
          "豈 更 車 compat 丽 丸", "〡〢〣 hangzhou", "⺀⺁ radicals ⼀⼁", "㐀㐁 ext-A", "鿿 \u9fff last", "々〆〤"]
    ja = ["東京タワーの夜景", "ひらがなとカタカナ", "こんにちは、世界！", "猫が好きです。", "ラーメン🍜を食べる",
          "富士山と桜の写真", "ｱｲｳｴｵ ﾊﾟﾋﾟﾌﾟ", "ヴァイオリン ゔ", "ー〜・", "アニメ風、少女、笑顔", "カ\u3099 ガ",
          "㍻ ㋿ ㌀", "ゟ ヿ", "日本語のテキストと English text", "「吾輩は猫である」"]
    ko = ["안녕하세요 세계", "한국어 텍스트", "고양이가 창문에 앉아 있다", "서울의 밤 풍경", "ㄱㄴㄷ ㅏㅑㅓ",
          "\u1100\u1161\u11a8 conjoining jamo", unicodedata.normalize("NFD", "한국어 분해"), "ㅋㅋㅋ ㅎㅎ",
          "ﾡﾢ halfwidth hangul", "김치 🌶️", "대한민국 만세!", "이것은 테스트입니다.", "㉠㉡ ㈀", "ꥠꥡ jamo ext-A",
          "힣 \ud7a3 last syllable"]
    for t in zh:
        add("cjk-zh", t)
    for t in ja:
        add("cjk-ja", t)
    for t in ko:
        add("cjk-ko", t)
    cjk_pool = [chr(c) for c in list(range(0x4E00, 0x4E00 + 300)) + list(range(0x3040, 0x30FF)) + list(range(0xAC00, 0xAC00 + 200))]
    for _ in range(40):
        add("cjk-mix", "".join(rng.choice(cjk_pool + [" ", "a", "1", "、", "。", "!", "😀"]) for _ in range(rng.randint(3, 30))))

    # emoji
    for t in ["😀", "😀😃😄😁", "a 😀 b", "cat🐱dog🐶", "👍🏽 👍🏻 👍🏿 skin tones", "👨‍👩‍👧‍👦 family zwj",
              "🧑🏽‍🚀 astronaut", "🏳️‍🌈 rainbow flag", "🏴‍☠️ pirate", "🇺🇸🇯🇵🇩🇪 flags", "🇺 lone indicator",
              "1️⃣ 2️⃣ #️⃣ *️⃣ keycaps", "❤️ ❤ ♥️ hearts", "☺️ ☺ vs16", "🫠 melting (U14)", "🫡 🫢 🫣 (U14)",
              "🩷 pink heart (U15)", "🫨 shaking face (U15)", "🪭 🪮 🫎 🫏 (U15)", "🐦‍⬛ black bird", "🙂‍↔️ (U15.1)",
              "👩🏻‍❤️‍💋‍👨🏼 kiss", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 scotland (tags)", "✨✨✨ sparkles", "🔥🔥 fire!!", "💯",
              "🎉🎊🎈 party", "emoji at end 🌅", "🌅emoji at start", "™️ ©️ ®️", "🅰️🅱️ blood types",
              "🀄 🃏 mahjong", "🕐🕑 clocks", "🦄🦋 unicorn butterfly", "🍕🍔🍟 food", "🚀🛸 space", "👁️‍🗨️ eye",
              "🧔‍♂️ man beard", "🤷‍♀️ shrug", "🫶🏼 heart hands"]:
        add("emoji", t)
    emoji_pool = [chr(c) for c in list(range(0x1F300, 0x1F650)) + list(range(0x1F900, 0x1F9FF)) + list(range(0x1FA70, 0x1FAFF))]
    for _ in range(40):
        add("emoji-mix", " ".join("".join(rng.choice(emoji_pool + ["\u200d", "\ufe0f", "\U0001f3fd", "a", "!"])
                                          for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 8))))

    # HTML entities (the non-ftfy path keeps them literally)
    for t in ["Tom &amp; Jerry", "&lt;b&gt;bold&lt;/b&gt;", "it&#39;s", "&quot;quoted&quot;", "a&nbsp;b",
              "&copy; 2024", "&#x1F600;", "&amp;amp;", "fish &amp chips", "&eacute;t&eacute;", "&#8212;",
              "AT&T", "R&D; Q&A", "&", "&&&", "&;", "&#;", "&#0;", "&lt;|endoftext|&gt;", "&#33;&#33;",
              "5 &gt; 3 &lt; 7", "rock &#x26; roll", "&hellip;", "&nbsp;&nbsp;&nbsp;", "&Auml;rger",
              "&lt;lora:x:1&gt;", "&apos;s", "&#39;S", "caf&#233;", "Ben &amp; Jerry&#39;s"]:
        add("html", t)

    # control and format characters
    ctrl = ["\x00", "\x01", "\x07", "\x08", "\x1b", "\x7f", "\x80", "\x85", "\x9f", "\u00ad", "\u061c", "\u180e",
            "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e", "\u2060", "\u2066", "\ufeff",
            "\ufff9", "\ufffb", "\ufffc", "\ufffd", "\U000e0001", "\U000e0041", "\ue000", "\uf8ff", "\U000f0000",
            "\U0010fffd", "\ufdd0", "\uffff", "\U0010ffff", "\u0378", "\u0cf3", "\U0001fa77", "\U00031350",
            "\U0001e030", "\u2fff", "\U000e01ef", "\ufe0f", "\U000e0100"]
    for c in ctrl:
        add("control", f"a{c}b")
        add("control", f"cat{c} dog {c}!{c}")
    add("control", "\x1b[31mred\x1b[0m ansi")
    add("control", "".join(ctrl))
    add("control", "<|endof\u200btext|>")
    add("control", "<|endof\x00text|> and <|start\u00adoftext|>")
    add("control", "it'\u200bs")

    # whitespace
    for t in ["tab\there", "new\nline", "cr\rlf\r\n", "a\vb\fc", "a\x1cb\x1dc\x1ed\x1fe", "a\u00a0b nbsp",
              "a\u2000b\u2001c\u2002d\u2003e\u2009f\u200ag", "line\u2028sep\u2029para", "a\u202fb\u205fc\u3000d",
              "ogham\u1680space", "mongolian\u180evs", "  leading", "trailing   ", "  both  ", "many     spaces",
              "\t\n\r mixed \t\n\r", "\u3000全角スペース\u3000", "a\u0085b nel", "\u2028", "x\u00a0\u00a0y",
              "one\ttwo\tthree\nfour", "\n\n\n", "end\n"]:
        add("whitespace", t)

    # RTL
    for t in ["مرحبا بالعالم", "قطة جميلة على النافذة", "السَّلَامُ عَلَيْكُمْ", "العربية ١٢٣ 123", "سلام دنیا",
              "اردو زبان", "שלום עולם", "בְּרֵאשִׁית בָּרָא", "עברית 2024", "mixed עברית and English",
              "\u200fRLM text\u200e", "\u202bembedding\u202c", "ﷺ ﷽ ligatures", "ﻻ ﻷ presentation forms",
              "ܫܠܡܐ syriac", "ދިވެހި thaana", "ߒߞߏ nko", "\u0640tatweel\u0640", "a\u064bb harakat on latin",
              "؟ ، ؛ arabic punct"]:
        add("rtl", t)

    # Indic and South-East Asian
    for t in ["नमस्ते दुनिया", "हिन्दी में पाठ", "ক্ষমা বাংলা", "தமிழ் மொழி", "తెలుగు", "ಕನ್ನಡ", "മലയാളം", "ગુજરાતી",
              "ਪੰਜਾਬੀ", "ଓଡ଼ିଆ", "සිංහල", "สวัสดีชาวโลก", "ภาษาไทย", "ພາສາລາວ", "ភាសាខ្មែរ", "မြန်မာဘာသာ",
              "བོད་ཡིག", "ᠮᠣᠩᠭᠣᠯ", "ꦗꦮ javanese", "ᬩᬮᬶ balinese", "क़ ड़ nukta", "क\u094d\u200dष zwj conjunct",
              "अ\u0951\u0952 vedic", "𑀅𑀲𑁄𑀓 brahmi", "ꯃꯤꯇꯩ meetei"]:
        add("indic", t)

    # special-token strings and SD2's "!" added token
    for t in ["<|startoftext|>", "<|endoftext|>", "<|startoftext|>a cat<|endoftext|>", "a<|endoftext|>b",
              "<|ENDOFTEXT|>", "<|EndOfText|> x", "<|ſtartoftext|>", "<|endoftext|", "|endoftext|>",
              "<<|endoftext|>>", "<|endoftext|><|endoftext|>", "<|startoftext|><|startoftext|>", "< |endoftext| >",
              "<|endoftext|>!", "!<|endoftext|>", "!!<|startoftext|>!!", "x!y", "!x!", "¡!¡", "!?", "?!", "!!!",
              "! ! !", "!\u0301", "\u0301!", "!!\u0345!!", "Ｘ！", "！", "wow!!!", "hello!world", "a!b!c!d",
              "!1!", "!a", "a!", "'!'", "!'s", "<!-- comment -->", "<|endoftext|>'s", "<|im_start|>", "<|"]:
        add("special", t)

    # unusual code points and case
    for t in ["\u0345", "a\u0345b", "\u0345\u0345", "ſ", "ſſ", "ſ's", "\u212a", "\u212b", "\u0130", "\u0130\u0130",
              "i\u0307", "ı", "ǅ ǆ Ǆ", "ẞ ß", "ﬀ", "ᾼ ᾳ ᾈ", "ΐ", "Ω \u2126", "µ μ", "ꟶ ꟷ ꟸ", "ⅰⅱ Ⅰ", "Ⓐⓐ",
              "🄰🅐🅰", "ª º", "ʰʲ", "ˆ ˇ", "\u1e9e", "\u0149", "\u01f0", "\u1f80\u1f88", "Ա ա", "Ꭰ ꭰ", "𑢠 𑣀",
              "𖹀 𖹠", "𞤀 𞤢", "\U0001d400\U0001d41a math", "\U0001f130", "\U0001f150", "\U0001d5d4"]:
        add("case", t)

    # long captions (> 77 tokens: truncation; long words: the heap BPE path)
    words = ("a beautiful detailed oil painting of a serene mountain landscape with a crystal clear lake "
             "reflecting snow capped peaks under a dramatic sky at golden hour with pine trees and wildflowers "
             "in the foreground").split()
    for k in range(12):
        add("long", " ".join(rng.choice(words) for _ in range(60 + 15 * k)))
    add("long", ", ".join(["1girl", "solo", "long_hair", "breasts", "looking_at_viewer", "smile", "open_mouth",
                           "blue_eyes", "blonde_hair", "shirt", "black_hair", "hair_ornament", "red_eyes"] * 8))
    add("long", "😀" * 120)
    add("long", "猫" * 200)
    add("long", "9" * 300)
    add("long", "!" * 200)
    add("long", "a" * 500)
    add("long", "ab" * 300)
    add("long", "aab" * 150)
    add("long", "Supercalifragilisticexpialidocious" * 12)
    for k in range(10):
        n = [70, 100, 200, 400, 800, 1500, 65, 120, 3000, 250][k]
        add("long-word", "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)))
    for k in range(6):
        n = [80, 150, 300, 600, 100, 200][k]
        add("long-word", "".join(rng.choice("etaoinshrdlu") for _ in range(n)))
    add("long-word", "".join(rng.choice("ñéüøåçß") for _ in range(200)))
    add("long-word", "".join(rng.choice("αβγδεζηθ") for _ in range(150)))
    add("long-word", "".join(rng.choice("абвгдежз") for _ in range(150)))
    add("long-word", "".join(rng.choice("!?.,;:-_*#") for _ in range(300)))
    para = ("The quick brown fox jumps over the lazy dog. It's a well-known pangram; THEY'LL use it for fonts! "
            "Café, naïve, résumé — 東京 and 서울 — 😀👍🏽 &amp; <b>tags</b>. ")
    add("long", para * 6)
    add("long", (para * 3).upper())

    # empty and blank
    for t in ["", " ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "\u200b", "\x00", "\ufeff", "\u2028",
              " \t\n\u3000\u00a0 ", "\x01\x02\x03", "\ufffd", "\ufffd\ufffd", "\u0345", "\U0001fa77", "\ue000", "\u2029"]:
        add("blank", t)

    # random mixtures from a pool of everything above
    pool = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789     ',.!?<>|-_()[]{}&;#@$%*/\\\"")
    pool += list("éèêëàâäôöûüçñßæœøåÉÀÖÜÇÑΑΣσςабвгЖЯ中国猫日本語ひらがなカタカナ한국어")
    pool += ["\u0301", "\u0308", "\u0323", "\u0345", "\u200b", "\u200d", "\ufe0f", "\u00ad", "\x00", "\t", "\n",
             "\u00a0", "\u3000", "\u2028", "\ufffd", "\U0001f600", "\U0001f3fd", "\U0001fa77", "\u0130", "\u017f",
             "\u212a", "\u01c5", "ª", "🄰", "ʰ", "①", "½", "Ⅻ", "٣", "\U00020000", "\uf900", "\ue000", "\u0cf3",
             "<|endoftext|>", "<|startoftext|>", "'s", "'LL", "&amp;", "!!"]
    for _ in range(320):
        add("random", "".join(rng.choice(pool) for _ in range(rng.randint(1, 40))))

    # sweep: a dozen code points from each 256-code-point page that has assigned characters
    pages = sorted({cp >> 8 for cp in range(0x110000)
                    if not (0xD800 <= cp < 0xE000) and unicodedata.category(chr(cp)) != "Cn"})
    for page in pages:
        if page >= 0xF0:  # private use planes: a few are enough
            if page not in (0xF0, 0xFF, 0x100, 0x10F):
                continue
        if 0x34 <= page < 0xA0 and page % 8:  # CJK/Hangul bulk pages: sample
            continue
        if 0x200 <= page < 0x2FA and page % 16:  # CJK ext B-F
            continue
        if 0x300 <= page < 0x324 and page % 8:  # CJK ext G/H
            continue
        cps = [cp for cp in range(page << 8, (page + 1) << 8) if not (0xD800 <= cp < 0xE000)]
        chosen = [chr(rng.choice(cps)) for _ in range(12)]
        add("sweep", "".join(chosen) if rng.random() < 0.5 else " ".join(chosen))
    return C


# --------------------------------------------------------------------------
# per-code-point reference behaviour


def ranges(pred):
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        if pred(cp):
            if out and out[-1][1] == cp - 1:
                out[-1][1] = cp
            else:
                out.append([cp, cp])
    return out


def unicode_table(tok):
    basic = tok.nlp
    norm = {}
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        norm[cp] = " ".join(basic.tokenize(chr(cp)))
    flags = regex.IGNORECASE
    rL = regex.compile(r"[\p{L}]", flags)
    rN = regex.compile(r"[\p{N}]", flags)
    rO = regex.compile(r"[^\s\p{L}\p{N}]", flags)
    rS = regex.compile(r"\s", flags)

    def rx(cp):
        c = chr(cp)
        hits = [bool(r.fullmatch(c)) for r in (rS, rL, rN, rO)]
        assert sum(hits) <= 1, hex(cp)
        k = hits.index(True) if any(hits) else 4
        # the tokenizer's own pattern agrees on the lone character
        assert tok.pat.findall(c) == ([c] if k in (1, 2, 3) else []), hex(cp)
        return k

    classes = {}
    for cp in range(0x110000):
        if not (0xD800 <= cp < 0xE000):
            classes[cp] = rx(cp)

    def final(s, i):
        return s.lower()[i] == "\u03c2"

    ign, cas = set(), set()
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        p0, p1, p2 = final(c + "Σ", -1), final("A" + c + "Σ", -1), final("AΣ" + c, 1)
        if p1 and p2:
            ign.add(cp)
        elif p0:
            cas.add(cp)
    return {
        "norm_empty": ranges(lambda cp: norm[cp] == ""),
        "norm_map": {f"{cp:X}": s for cp, s in norm.items() if s not in ("", chr(cp))},
        "isspace": ranges(lambda cp: chr(cp).isspace()),
        "regex_space": ranges(lambda cp: classes[cp] == 0),
        "regex_letter": ranges(lambda cp: classes[cp] == 1),
        "regex_number": ranges(lambda cp: classes[cp] == 2),
        "regex_none": ranges(lambda cp: classes[cp] == 4),
        "case_ignorable": ranges(lambda cp: cp in ign),
        "cased_not_ignorable": ranges(lambda cp: cp in cas),
        "lower_map": {f"{cp:X}": chr(cp).lower() for cp in range(0x110000)
                      if not (0xD800 <= cp < 0xE000) and chr(cp).lower() != chr(cp)},
    }


# --------------------------------------------------------------------------


def dumps_line(obj):
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    # keep one JSON document per physical line whatever splits lines
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\u0085", "\\u0085")


def ids_hash(ids):
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]


def main():
    dirs = subprocess.run([os.path.join(ROOT, ".venv-test", "bin", "python"),
                           os.path.join(ROOT, "tests", "fixtures", "get_clip_vocab.py"), ROOT],
                          check=True, capture_output=True, text=True).stdout.split()
    sd1_dir, sd2_dir = dirs
    tmp = tempfile.mkdtemp(prefix="gen-tok-")
    tiny_dir = os.path.join(tmp, "tiny")
    make_tiny_tokenizer.write(tiny_dir, "eos")

    sd1 = CLIPTokenizer.from_pretrained(sd1_dir)
    sd2 = CLIPTokenizer.from_pretrained(sd2_dir)
    tiny = CLIPTokenizer.from_pretrained(tiny_dir)
    for t in (sd1, sd2, tiny):
        assert t.fix_text is None and hasattr(t, "nlp"), "ftfy path active: the reference must not use ftfy"
        assert not t.is_fast and t.model_max_length == MAX_LEN
    assert (sd1.pad_token_id, sd2.pad_token_id, tiny.pad_token_id) == (49407, 0, 513)
    assert (sd1.bos_token_id, sd1.eos_token_id, tiny.bos_token_id, tiny.eos_token_id) == (49406, 49407, 512, 513)
    assert len(sd1.encoder) == 49408 and len(sd1.bpe_ranks) == 48894
    # sd_spec.md §4 vectors
    spec = {"a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
            "a photo of a dog": [49406, 320, 1125, 539, 320, 1929, 49407],
            "Hello, world!": [49406, 3306, 267, 1002, 256, 49407],
            "A PHOTO of  a Cat!": [49406, 320, 1125, 539, 320, 2368, 256, 49407], "": [49406, 49407]}
    for text, ids in spec.items():
        assert sd1(text).input_ids == ids, (text, sd1(text).input_ids)

    cap = corpus()
    assert len(cap) >= 1000, len(cap)
    os.makedirs(OUT, exist_ok=True)
    n_trunc = n_sd2_diff = 0
    lines_c, lines_i = [], []
    for cat, text in cap:
        rec = {}
        for name, t in (("sd1", sd1), ("sd2", sd2), ("tiny", tiny)):
            full = t(text).input_ids
            padded = t(text, padding="max_length", max_length=MAX_LEN, truncation=True).input_ids
            body = full[1:-1][:MAX_LEN - 2]
            derived = [t.bos_token_id] + body + [t.eos_token_id]
            derived += [t.pad_token_id] * (MAX_LEN - len(derived))
            assert padded == derived, (name, text)
            rec[name] = full
        n_trunc += len(rec["sd1"]) > MAX_LEN
        out = {"sd1": rec["sd1"]}
        if rec["sd2"] != rec["sd1"]:
            out["sd2"] = rec["sd2"]
            n_sd2_diff += 1
        out["tiny"] = ids_hash(rec["tiny"])
        lines_c.append(dumps_line({"cat": cat, "text": text}))
        lines_i.append(dumps_line(out))
    with open(os.path.join(OUT, "corpus.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines_c) + "\n")
    with open(os.path.join(OUT, "ids.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines_i) + "\n")

    # slow (this reference) vs fast (Rust `tokenizers`, what CLIPTokenizer is in transformers >= 5)
    from transformers import CLIPTokenizerFast
    import tokenizers
    fast_diff = {}
    fast_cats = {}
    for name, d, slow in (("sd1", sd1_dir, sd1), ("sd2", sd2_dir, sd2)):
        fast = CLIPTokenizerFast.from_pretrained(d)
        n = 0
        for cat, text in cap:
            if fast(text).input_ids != slow(text).input_ids:
                n += 1
                fast_cats.setdefault(name, {}).setdefault(cat, 0)
                fast_cats[name][cat] += 1
        fast_diff[name] = n

    # configuration variants
    variants = {}
    for name, d in tokenizer_variants.write_variants(os.path.join(tmp, "variants")).items():
        t = CLIPTokenizer.from_pretrained(d)
        assert t.fix_text is None
        max_len = t.model_max_length if t.model_max_length < 10**6 else None  # no config: unbounded in HF
        L = max_len or MAX_LEN
        rec = {"pad": t.pad_token_id, "bos": t.bos_token_id, "eos": t.eos_token_id,
               "unk": t.convert_tokens_to_ids(t.unk_token), "max_len": max_len,
               "added": sorted([i, tok] for tok, i in t.added_tokens_encoder.items())}
        rec["captions"] = [t(c).input_ids for c in tokenizer_variants.CAPTIONS]
        h = hashlib.sha256()
        for c in tokenizer_variants.CAPTIONS + [text for _, text in cap]:
            full = t(c).input_ids
            padded = t(c, padding="max_length", max_length=L, truncation=True).input_ids
            body = full[1:-1][:L - 2]
            derived = [t.bos_token_id] + body + [t.eos_token_id]
            assert padded == derived + [t.pad_token_id] * (L - len(derived)), (name, c)
            h.update((",".join(map(str, full)) + "\n").encode())
        rec["corpus_hash"] = h.hexdigest()
        variants[name] = rec
    with open(os.path.join(OUT, "variants.json"), "w", encoding="utf-8") as f:
        json.dump(variants, f, separators=(",", ":"))
        f.write("\n")

    uni = unicode_table(sd1)
    with open(os.path.join(OUT, "unicode.json"), "w", encoding="utf-8") as f:
        json.dump(uni, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")

    summary = {
        "python": sys.version.split()[0], "unidata_version": unicodedata.unidata_version,
        "transformers": transformers.__version__, "regex": regex.__version__, "tokenizers": tokenizers.__version__,
        "captions": len(cap), "truncated_sd1": n_trunc, "sd2_differs_from_sd1": n_sd2_diff,
        "fast_differs_from_slow": fast_diff, "fast_differs_by_category": fast_cats,
        "categories": {c: sum(1 for k, _ in cap if k == c) for c in sorted({k for k, _ in cap})},
    }
    with open(os.path.join(OUT, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(summary, indent=1, sort_keys=True), file=sys.stderr)


if __name__ == "__main__":
    main()
