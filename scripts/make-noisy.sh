#!/bin/sh
# Plants caption noise in a pairs table, for the curation experiment
# (docs/curation.md): each row, with probability FRACTION, takes the title
# and coarse caption of another random row showing another image; a column
# "noisy" (1 or 0) records which rows were changed, so a filter's precision
# and recall on the planted noise can be measured. The draws are a
# Park-Miller generator seeded by SEED, exact in any awk's doubles, so the
# same arguments give the same file everywhere.
#   scripts/make-noisy.sh IN.tsv OUT.tsv [FRACTION (0.4)] [SEED (1)]
set -eu
case "${1:-}" in -h|--help|'') sed -n '2,9p' "$0"; exit 0 ;; esac
in=$1 out=$2 frac=${3:-0.4} seed=${4:-1}
awk -F'\t' -v OFS='\t' -v frac="$frac" -v seed="$seed" '
function draw() { state = (state * 16807) % 2147483647; return state / 2147483647 }
NR == 1 {
    for (k = 1; k <= NF; k++) col[$k] = k
    if (!("title" in col) || !("filepath" in col)) { print "make-noisy: " FILENAME " lacks filepath/title" > "/dev/stderr"; exit 2 }
    header = $0; next
}
{ n++; row[n] = $0; path[n] = $col["filepath"]; title[n] = $col["title"]; coarse[n] = ("coarse" in col) ? $col["coarse"] : "" }
END {
    state = (seed % 2147483646) + 1
    for (i = 0; i < 10; i++) draw()
    print header, "noisy"
    changed = 0
    for (i = 1; i <= n; i++) {
        nf = split(row[i], f, "\t")
        noisy = 0
        if (draw() < frac) {
            do { j = 1 + int(draw() * n); if (j > n) j = n } while (title[j] == title[i] || path[j] == path[i])
            f[col["title"]] = title[j]
            if ("coarse" in col) f[col["coarse"]] = coarse[j]
            noisy = 1; changed++
        }
        line = f[1]
        for (k = 2; k <= nf; k++) line = line OFS f[k]
        print line, noisy
    }
    printf "make-noisy: %d of %d captions replaced (%.1f%%)\n", changed, n, 100 * changed / n > "/dev/stderr"
}' "$in" > "$out"
