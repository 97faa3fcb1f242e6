#!/bin/sh
# One vocabulary of flags (docs/cli.md): scripts/cli-flags.sh finds no flag
# with two meanings across the commands' tables, the page is current, the
# check fails on a table that gives one flag two meanings, and the parser
# refuses a flag given twice, two flags that set one thing, and pairs a
# command declares exclusive.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
. "$root/tests/tap.sh"
vlp=$here/../vlp
tap_tmpdir cliflags
cd "$tmp" || exit 1

sh "$root/scripts/cli-flags.sh" "$vlp" --check > check.log 2>&1
tap_if "no flag has two meanings across the commands" check.log [ $? -eq 0 ]
sh "$root/scripts/cli-flags.sh" "$vlp" > cli.md 2> cli.err
tap_if "docs/cli.md is current (scripts/cli-flags.sh build/release/vlp > docs/cli.md)" cli.err \
    cmp cli.md "$root/docs/cli.md"
tap_grep "the page lists vlp train's --steps with its short form" cli.md '| `--steps` | `-n` | yes |'

# the check itself fails on a table that gives -k to a second flag
cat > fakevlp <<FAKE
#!/bin/sh
"$vlp" "\$@" || exit \$?
[ "\$1 \$2" = "train --list-options" ] && printf 'train\t-k\t--keep-last\tN\ta whole number\t1\tcheckpoints kept\n'
exit 0
FAKE
chmod +x fakevlp
sh "$root/scripts/cli-flags.sh" ./fakevlp --check > mutated.log 2>&1
tap_if "a table giving -k two meanings fails the check" mutated.log [ $? -eq 1 ]
tap_grep "and the check names both" mutated.log "-k is --keep-last in train and --top in search"

# the parser: twice, the same thing, exclusive pairs (exit 2 before any work)
"$vlp" embed -t 1 --threads 2 --texts x --out o.npy > twice.log 2>&1
tap_if "a flag given twice (short and long): exit 2" twice.log [ $? -eq 2 ]
tap_grep "and it says so" twice.log "vlp embed: --threads is given twice; give it once"
"$vlp" embed --gelu --quick-gelu --texts x --out o.npy > same.log 2>&1
tap_if "--gelu with --quick-gelu: exit 2" same.log [ $? -eq 2 ]
tap_grep "they set the same thing" same.log "vlp embed: --gelu and --quick-gelu set the same thing; give one"
"$vlp" embed --white-background --drop-alpha --texts x --out o.npy > alpha.log 2>&1
tap_if "--white-background with --drop-alpha: exit 2" alpha.log [ $? -eq 2 ]
"$vlp" train --epochs 1 --steps 3 --out r > excl.log 2>&1
tap_if "vlp train --epochs with --steps: exit 2" excl.log [ $? -eq 2 ]
tap_grep "--epochs no longer overrides --steps silently" excl.log "vlp train: --epochs and --steps exclude each other; give one"
tap_if "and nothing was made" excl.log [ ! -e r ]
"$vlp" classify --model m --image i --labels a,b --prompts p --templates default > cls.log 2>&1
tap_if "vlp classify --prompts with --templates: exit 2" cls.log [ $? -eq 2 ]
tap_grep "named both" cls.log "vlp classify: --prompts and --templates exclude each other; give one"
"$vlp" search --index x.npy --image a.png --image b.png --model m > img2.log 2>&1
tap_if "a second --image no longer replaces the first" img2.log [ $? -eq 2 ]
tap_grep "it is refused" img2.log "vlp search: --image is given twice"
"$vlp" adapt --help > adapt-help.log 2>&1
tap_if "vlp adapt --help lists -b once" adapt-help.log [ "$(grep -c -- '-b, ' adapt-help.log)" -eq 1 ]
tap_grep "and the encoders' batch under its own name" adapt-help.log "--encode-batch N"
"$vlp" classify --help > classify-help.log 2>&1
tap_grep "classify --help lists --image" classify-help.log "--image F"
"$vlp" eval --help > eval-help.log 2>&1
tap_grep "eval --help lists --zeroshot" eval-help.log "--zeroshot "
tap_grep "eval --help lists --linear-probe" eval-help.log "--linear-probe"
# a flag renamed by this vocabulary is answered with its new name
"$vlp" data filter --data p.tsv --out k.tsv --score-model m > renamed.log 2>&1
tap_if "an old flag: exit 2" renamed.log [ $? -eq 2 ]
tap_grep "and its new name" renamed.log "vlp data filter: unknown option '--score-model': it is --model now"
tap_end
