"""Write the calibration prompt set shipped with flux2-int8 (768 prompts), reproducibly.

    python scripts/make_calibration_prompts.py [--out src/flux2_int8/quantization/data/calibration_prompts.jsonl]

The set is ours: built from the word lists below with a fixed seed, so the shipped
file is exactly what this script prints and anyone can see where every prompt came
from. 256 text-to-image prompts (`t2i-NNN`) vary subject, setting, style, lighting and
length; 256 edit prompts (`edit-NNN`) each name one t2i prompt as `references` (the
image to edit is generated from it at calibration time) and act on that prompt's
subject; 256 composition prompts (`composition-NNN`) name two t2i prompts and combine
their subjects. Edits and compositions only reference the subject of their images,
so every instruction makes sense for the image it is applied to.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

SEED = 20260101
PER_TASK = 256
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "flux2_int8" / "quantize" / "data" / "calibration_prompts.jsonl"

# (phrase used in a t2i prompt, short noun used by edits and compositions)
SUBJECTS = (
    ("a ginger cat curled up asleep", "cat"), ("a golden retriever puppy with a red collar", "puppy"),
    ("an old fisherman with a white beard", "fisherman"), ("a young woman in a yellow raincoat", "woman"),
    ("a vintage red bicycle with a wicker basket", "bicycle"), ("a steaming cup of cappuccino", "cup"),
    ("a small wooden sailboat", "sailboat"), ("a lighthouse with red and white stripes", "lighthouse"),
    ("a bowl of ramen with a soft-boiled egg", "bowl of ramen"), ("a vintage typewriter", "typewriter"),
    ("a fox with a bushy tail", "fox"), ("a child flying a kite", "child"), ("a classic blue convertible car", "car"),
    ("an astronaut in a white spacesuit", "astronaut"), ("a stack of old leather-bound books", "books"),
    ("a potted monstera plant", "plant"), ("a grey heron standing in shallow water", "heron"),
    ("a street musician playing a saxophone", "musician"), ("a glass teapot with blooming tea", "teapot"),
    ("a wooden cabin with a smoking chimney", "cabin"), ("a barn owl on a fence post", "owl"),
    ("a pair of worn hiking boots", "boots"), ("a ceramic vase with sunflowers", "vase"),
    ("a tabby kitten playing with yarn", "kitten"), ("a chef tossing vegetables in a wok", "chef"),
    ("an elderly couple holding hands on a bench", "couple"), ("a red double-decker bus", "bus"),
    ("a hot air balloon with a patchwork pattern", "hot air balloon"), ("a knight in polished armor", "knight"),
    ("a small robot with round glowing eyes", "robot"), ("a slice of strawberry cake", "cake"),
    ("a horse galloping through tall grass", "horse"), ("a ballet dancer mid-leap", "dancer"),
    ("an antique brass pocket watch", "pocket watch"), ("a green vintage motorcycle", "motorcycle"),
    ("a snowman with a carrot nose and a scarf", "snowman"), ("a koi fish under lily pads", "koi fish"),
    ("a man in a tailored navy suit", "man"), ("a paper lantern glowing orange", "lantern"),
    ("a camper van with surfboards on the roof", "camper van"), ("a polar bear on an ice floe", "polar bear"),
    ("a basket of freshly baked croissants", "croissants"), ("a violin resting on sheet music", "violin"),
    ("a girl with curly hair reading a comic book", "girl"), ("a steam locomotive crossing a stone bridge", "locomotive"),
    ("a hedgehog among autumn leaves", "hedgehog"), ("a mechanical wristwatch on a leather strap", "wristwatch"),
    ("a pink flamingo standing on one leg", "flamingo"), ("a gaming laptop with a glowing keyboard", "laptop"),
    ("a gardener holding a basket of tomatoes", "gardener"), ("a tiny treehouse in an oak tree", "treehouse"),
    ("a blue ceramic mug with a chipped rim", "mug"), ("a skateboarder doing a kickflip", "skateboarder"),
    ("a red panda eating bamboo", "red panda"), ("a medieval castle on a hill", "castle"),
    ("a pair of white sneakers", "sneakers"), ("a jellyfish drifting in dark water", "jellyfish"),
    ("a grandmother knitting a sweater", "grandmother"), ("a neon sign shaped like a palm tree", "neon sign"),
    ("a dragon made of origami paper", "origami dragon"), ("a firefighter in full gear", "firefighter"),
    ("a rustic loaf of sourdough bread", "bread"), ("a parrot with green and red feathers", "parrot"),
    ("an electric guitar leaning against an amplifier", "guitar"),
)

SETTINGS = (
    "on a wooden kitchen table", "in a sunlit meadow", "on a rainy city street", "in a snowy forest",
    "on a rocky beach", "in a cozy living room", "in a busy train station", "on a rooftop at night",
    "in a misty bamboo grove", "in a desert with red sand dunes", "in a modern glass office", "by a mountain lake",
    "in a flower market", "in an abandoned warehouse", "on a small boat at sea", "in a library with tall shelves",
    "in a neon-lit alley", "in a vegetable garden", "on a cobblestone square", "in an art studio full of canvases",
    "in a tropical rainforest", "against a white wall", "on a frozen lake", "in a lavender field",
    "in a Victorian greenhouse", "on a subway platform", "at a night market", "in a sunflower field",
    "inside a spaceship cabin", "on a windy cliff above the ocean", "in a diner with red booths", "in an autumn park",
)

STYLES = (
    "a photograph", "a cinematic still", "a watercolor painting", "an oil painting", "a pencil sketch",
    "a studio product photo", "a 35mm film photo", "a flat vector illustration", "a 3D render",
    "a children's book illustration", "a ukiyo-e woodblock print", "a charcoal drawing", "a pixel art scene",
    "an isometric illustration", "a claymation still", "a polaroid photo", "a gouache painting",
    "a comic book panel", "a macro photograph", "a black and white portrait photo", "an architectural visualization",
    "a linocut print", "a long exposure photograph", "a low-poly render",
)

LIGHTING = (
    "at golden hour", "under soft overcast light", "lit by a single candle", "under harsh midday sun",
    "in blue hour twilight", "with dramatic rim lighting", "under neon lights", "in dappled sunlight",
    "on a foggy morning", "under a full moon", "with warm window light", "with studio softbox lighting",
    "during a thunderstorm", "at sunrise", "with colorful stage lights", "in the glow of a campfire",
)

DETAILS = (
    "shallow depth of field", "highly detailed", "wide angle", "close-up", "symmetrical composition",
    "muted color palette", "vibrant colors", "high contrast", "soft focus background", "top-down view",
    "rule of thirds", "film grain", "pastel tones", "tilt-shift effect", "minimalist", "ultra sharp",
)

SIGNS = ("OPEN LATE", "FRESH BREAD", "HELLO WORLD", "NO PARKING", "SALE 50%", "WELCOME HOME", "CAFE", "EXIT 12")

COLORS = ("yellow", "deep blue", "emerald green", "crimson", "white", "black", "purple", "orange", "silver", "pastel pink")

EDITS = (
    "Change the color of the {noun} to {color}.", "Replace the background with {setting}.",
    "Make it look like {style}.", "Change the lighting so the scene is {light}.", "Remove the {noun} and fill in the background.",
    "Add falling snow to the scene.", "Turn the scene into nighttime with a starry sky.", "Make the {noun} twice as large.",
    "Add a small wooden sign that reads \"{sign}\" next to the {noun}.", "Put a party hat on the {noun}.",
    "Move the {noun} to the left side of the image.", "Make the image look like an old faded photograph.",
    "Add a reflection of the {noun} in a puddle below it.", "Make the {noun} glow {color}.",
    "Zoom out to show more of the surroundings.", "Make it rain heavily.", "Change the season to autumn.",
    "Add a second {noun} beside the first one.", "Blur the background and keep the {noun} sharp.",
    "Convert the image to black and white except the {noun}.", "Add a flock of birds in the sky.",
    "Replace the {noun} with a {other}.", "Make the {noun} look like it is made of glass.",
    "Make the {noun} look like a plush toy.", "Add warm fairy lights around the {noun}.",
)

COMPOSITIONS = (
    "Place the {a} from the first image next to the {b} from the second image {setting}.",
    "Put the {a} from image 1 into the scene of image 2.",
    "Show the {a} from the first image and the {b} from the second image together, as {style}.",
    "Render the {a} from the first image in the style of the second image.",
    "The {a} from image 1 is looking at the {b} from image 2, {light}.",
    "Combine both images: the {a} in the foreground, the {b} in the background.",
    "Make a poster with the {a} from the first image and the {b} from the second image and the title \"{sign}\".",
    "Replace the {b} in the second image with the {a} from the first image.",
    "Use the background of the first image and add the {b} from the second image.",
    "Put the {a} from image 1 on top of the {b} from image 2.",
    "Create a split-screen picture: left the {a} from image 1, right the {b} from image 2.",
    "The {a} from the first image and the {b} from the second image meet {setting}, {detail}.",
)


def text_to_image_prompt(rng: random.Random, index: int) -> tuple[str, str]:
    """One t2i prompt and its subject noun. Lengths vary: a quarter short, a quarter with text to render."""
    phrase, noun = SUBJECTS[index % len(SUBJECTS)]
    setting, style, light = rng.choice(SETTINGS), rng.choice(STYLES), rng.choice(LIGHTING)
    shape = index % 4
    if shape == 0:
        prompt = f"{phrase[0].upper()}{phrase[1:]} {setting}."
    elif shape == 1:
        prompt = f"{style[0].upper()}{style[1:]} of {phrase} {setting}, {light}."
    elif shape == 2:
        details = ", ".join(rng.sample(DETAILS, 3))
        prompt = f"{style[0].upper()}{style[1:]} of {phrase} {setting}, {light}, {details}."
    else:
        prompt = f"{style[0].upper()}{style[1:]} of {phrase} {setting} beside a sign that says \"{rng.choice(SIGNS)}\", {light}."
    return prompt, noun


def edit_prompt(rng: random.Random, noun: str) -> str:
    other = rng.choice([n for _, n in SUBJECTS if n != noun])
    return rng.choice(EDITS).format(
        noun=noun, other=other, color=rng.choice(COLORS), setting=rng.choice(SETTINGS).split(" ", 1)[1] if rng.random() < 0.5 else "a plain white studio",
        style=rng.choice(STYLES), light=rng.choice(LIGHTING), sign=rng.choice(SIGNS),
    )


def composition_prompt(rng: random.Random, first: str, second: str) -> str:
    return rng.choice(COMPOSITIONS).format(
        a=first, b=second, setting=rng.choice(SETTINGS), style=rng.choice(STYLES), light=rng.choice(LIGHTING),
        sign=rng.choice(SIGNS), detail=rng.choice(DETAILS),
    )


def build_records(seed: int = SEED) -> list[dict]:
    """The 768 records; a prompt text is drawn again until it is new, so every prompt is distinct."""
    rng = random.Random(seed)
    seen: set[str] = set()

    def fresh(draw: Callable[..., str], *args: object) -> str:
        text = draw(*args)
        while text in seen:
            text = draw(*args)
        seen.add(text)
        return text

    records: list[dict] = []
    nouns: list[str] = []
    order = list(range(PER_TASK))
    rng.shuffle(order)
    for number, index in enumerate(order):
        nouns.append(SUBJECTS[index % len(SUBJECTS)][1])
        prompt = fresh(lambda r, i: text_to_image_prompt(r, i)[0], rng, index)
        records.append({"id": f"t2i-{number:03d}", "task": "t2i", "prompt": prompt})
    edited = rng.sample(range(PER_TASK), PER_TASK)  # every t2i image is edited once
    for number, source in enumerate(edited):
        prompt = fresh(edit_prompt, rng, nouns[source])
        records.append({"id": f"edit-{number:03d}", "task": "edit", "prompt": prompt, "references": [f"t2i-{source:03d}"]})
    for number in range(PER_TASK):
        first, second = rng.sample(range(PER_TASK), 2)
        while nouns[first] == nouns[second]:
            first, second = rng.sample(range(PER_TASK), 2)
        prompt = fresh(composition_prompt, rng, nouns[first], nouns[second])
        records.append({"id": f"composition-{number:03d}", "task": "composition", "prompt": prompt, "references": [f"t2i-{first:03d}", f"t2i-{second:03d}"]})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    records = build_records()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    print(f"wrote {len(records)} prompts to {args.out}")


if __name__ == "__main__":
    main()
