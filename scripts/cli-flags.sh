#!/bin/sh
# The CLI's vocabulary of flags, from every command's own option tables
# (vlp CMD --list-options), checked and written as docs/cli.md.
#   scripts/cli-flags.sh VLP          writes the page to stdout
#   scripts/cli-flags.sh VLP --check  prints each flag with two meanings, exit 1 if any
# A flag has one meaning: one short form (or none) for one long flag, in
# every command; a value in every command or in none; the same default
# wherever it has one, except the flags in PER_COMMAND below, whose defaults
# follow what the command trains; and a command lists a flag once.
set -eu
vlp=$1
mode=${2:-doc}
# flags whose default depends on the command, and why (one a line: flag, reason)
PER_COMMAND='--batch	a training step: 128 pairs in vlp train, the paper'"'"'s for each method in vlp adapt
--lr	AdamW for pre-training, SGD for prompts (the paper'"'"'s)
--wd	AdamW for pre-training, SGD for prompts (the paper'"'"'s)
--seed	vlp adapt follows CoOp'"'"'s seeds (1, 2, 3)
--merges	vlp tokenize uses at most N of a file'"'"'s merges (0: all), vlp data tokenizer learns N
--white-background	a new run'"'"'s choice in vlp train; elsewhere it overrides the loaded model'"'"'s rule'

cmds=$("$vlp" --help | awk '/^commands:/ {on = 1; next} on && !NF {exit} on {print $1}')
list=$(mktemp)
trap 'rm -f "$list"' EXIT INT TERM
for c in $cmds; do
    if [ "$c" = data ]; then
        for t in $("$vlp" data --help | awk '/^  [a-z]/ {print $1}'); do "$vlp" data "$t" --list-options; done
    else
        "$vlp" "$c" --list-options
    fi
done > "$list"

printf '%s\n' "$PER_COMMAND" | awk -F'\t' -v mode="$mode" '
FNR == NR { per[$1] = $2; next }
{
    cmd = $1; s = $2; l = $3; arg = $4; def = $6; help = $7
    n++
    if ((cmd SUBSEP l) in seen) bad[++nb] = sprintf("%s lists %s twice", cmd, l)
    if (s != "-" && (cmd SUBSEP s) in seen_s) bad[++nb] = sprintf("%s gives %s to %s and %s", cmd, s, seen_s[cmd, s], l)
    seen[cmd, l] = 1; if (s != "-") seen_s[cmd, s] = l
    if (!(l in first)) { first[l] = cmd; order[++nl] = l; short[l] = s; takes[l] = (arg != "-") }
    else {
        if (short[l] != s) bad[++nb] = sprintf("%s has the short form %s in %s, %s in %s", l, short[l], first[l], s, cmd)
        if (takes[l] != (arg != "-")) bad[++nb] = sprintf("%s takes a value in one of %s and %s, not in the other", l, first[l], cmd)
    }
    if (s != "-") { if ((s in owner) && owner[s] != l) bad[++nb] = sprintf("%s is %s in %s and %s in %s", s, owner[s], owner_cmd[s], l, cmd); else { owner[s] = l; owner_cmd[s] = cmd } }
    if (def != "(none)" && def != "-" && !(l in per)) {
        if ((l in dflt) && dflt[l] != def) bad[++nb] = sprintf("%s defaults to %s in %s, %s in %s", l, dflt[l], dflt_cmd[l], def, cmd)
        else if (!(l in dflt)) { dflt[l] = def; dflt_cmd[l] = cmd }
    }
    vals[l] = vals[l] (nv[l]++ ? "; " : "") cmd ": " def
    key = l SUBSEP help
    if (!(key in helps)) { helps[key] = cmd; hl[l, ++nh[l]] = help; hcmd[l, nh[l]] = cmd } else { for (k = 1; k <= nh[l]; k++) if (hl[l, k] == help) hcmd[l, k] = hcmd[l, k] ", " cmd }
}
END {
    if (n == 0) { print "no options listed" > "/dev/stderr"; exit 1 }
    if (mode == "--check") { for (i = 1; i <= nb; i++) print bad[i]; exit nb > 0 }
    print "# vlp command-line flags"
    print ""
    print "Every flag of every command, written by `scripts/cli-flags.sh build/release/vlp`"
    print "from the commands'"'"' own option tables (`vlp CMD --list-options`); `make test`"
    print "checks that this page is current and that no flag has two meanings:"
    print ""
    print "- a short flag stands for one long flag in every command;"
    print "- a flag takes a value in every command or in none;"
    print "- a flag has one default wherever it has one, except those in the last table;"
    print "- a command lists a flag once; giving a flag twice, or two flags that set one"
    print "  thing (`--gelu` and `--quick-gelu`), is an error, as are pairs a command"
    print "  declares exclusive (`vlp train --epochs` and `--steps`)."
    print ""
    print "| flag | short | value | meaning | commands |"
    print "|---|---|---|---|---|"
    for (i = 1; i <= nl; i++) {
        l = order[i]
        for (k = 1; k <= nh[l]; k++) {
            h = hl[l, k]; gsub(/\|/, "\\|", h)
            printf "| %s | %s | %s | %s | %s |\n", k == 1 ? "`" l "`" : "", k == 1 && short[l] != "-" ? "`" short[l] "`" : "", k == 1 ? (takes[l] ? "yes" : "switch") : "", h, hcmd[l, k]
        }
    }
    print ""
    print "Flags whose default depends on the command:"
    print ""
    print "| flag | why | defaults |"
    print "|---|---|---|"
    for (i = 1; i <= nl; i++) { l = order[i]; if (l in per) printf "| `%s` | %s | %s |\n", l, per[l], vals[l] }
}' - "$list"
