#!/usr/bin/env bash
# Rebuild the README's pictures in samples/ from the shipped models (about 10 minutes on 2 CPU cores).
# Each picture's command is the one the README names beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
M=pretrained
python generate.py --model=$M --prompt_file=samples/prompts.txt --num_images=8 --out=samples/prompts.png
python generate.py --model=$M --num_images=32 --out=samples/generated_images.png
python generate.py --model=$M --prompt_file=samples/guide.txt --num_images=8 --out=samples/guide.png
python generate.py --model=$M --prompt_file=samples/objects.txt --num_images=8 --out=samples/objects.png
python generate.py --model=$M --prompt_file=samples/objects_captions.txt --num_images=8 --out=samples/objects_captions.png
python evaluate.py --model=$M --held_out=data/heldout.txt --unseen_picture=samples/unseen.png --json=outputs/heldout.json
python evaluate.py --model=$M --data_dir=data/dcss_items --captions --nearest=samples/nearest.png
python generate.py --model=$M --init=data/dcss_items/potion/0735_potion_offset_1.png --prompt="a blue potion" --strength=0.3 --num_images=8 --out=samples/strength_0.3.png
python generate.py --model=$M --init=data/dcss_items/potion/0735_potion_offset_1.png --prompt="a blue potion" --strength=0.6 --num_images=8 --out=samples/strength_0.6.png
python generate.py --model=$M --init=data/dcss_items/potion/0735_potion_offset_1.png --prompt="a blue potion" --strength=0.9 --num_images=8 --out=samples/strength_0.9.png
python generate.py --model=$M --init=data/dcss_items/book/0790_book_offset_1.png --mask=samples/mask_centre.png --prompt="a red book" --num_images=8 --out=samples/inpainting.png
python generate.py --model=$M --init=data/dcss_items/weapon/0192_wpn_hand_axe.png --extend=right --by=12 --prompt="a grey hand axe, weapon" --num_images=8 --out=samples/outpainting.png
# the sprite sheets generate.py writes beside each picture; generated_images_sheet.png is kept as an example
find samples -maxdepth 1 -name '*_sheet.png' ! -name generated_images_sheet.png -delete
python visualize.py --model=$M --out=samples/visualization.png --strip_out=samples/forward_process.png
python evaluate.py --model=$M/terrain --seam_table --num_samples=64 --seam_picture=samples/tiles.png
python tileset.py --model=$M/terrain --terrains=floor,water --out=outputs/tileset
python - <<'PY'
from PIL import Image
m = Image.open("outputs/tileset/map.png")
m.resize((m.width * 2, m.height * 2), Image.NEAREST).save("samples/tileset_map.png")
c, b = (Image.open(f"outputs/tileset/floor-water_{k}.png") for k in ("corner", "blob"))
sets = Image.new("RGB", (c.width + 16 + b.width, max(c.height, b.height)), (255, 255, 255))
sets.paste(c, (0, 0))
sets.paste(b, (c.width + 16, 0))
sets.resize((sets.width * 3, sets.height * 3), Image.NEAREST).save("samples/tileset_sets.png")
PY
python app.py --model=$M --screenshot=samples/app.png --characters=
python animate.py --prompt="a man with blond hair, a red shirt and teal pants" --out=outputs/animate_prompt
python - <<'PY'
from PIL import Image
s = Image.open("outputs/animate_prompt/sheet.png")
s.resize((s.width * 2, s.height * 2), Image.NEAREST).save("samples/walk.png")
PY
cp outputs/animate_prompt/walk_down.gif outputs/animate_prompt/walk_right.gif samples/
# samples/recipes.png and samples/backbones.png are drawn by `python recipes.py --report` from the
# recipe runs of RESULTS.md, which take hours; they are not redrawn here.
echo "rebuilt the pictures in samples/"
