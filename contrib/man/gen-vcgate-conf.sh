#!/bin/sh
# Generate vcgate.conf(5) from the option tables of a built vcgate, so the
# manual cannot drift from the code: `vcgate -P NAME` prints each option as
#   <indent>name = default;<spaces># doc[ [min..max]][ (unset)][ (restart)]
# (the markers in any order), and this script turns every such line into an
# mdoc entry with its type, default, range and whether it reloads.
#
#   gen-vcgate-conf.sh [-p DIR]... [-s SYSCONFDIR] [-m MISSING] VCGATE TEMPLATE NAME...
#
# NAME is core or a plugin name, searched in the -p directories (the build
# tree's plugins/*/.libs); MISSING lists plugins this build lacks, which the
# page names as absent.  The result, TEMPLATE with its @OPTIONS@ line
# replaced, goes to stdout.  Any failure of vcgate exits non-zero: a
# half-generated page is worse than none.
set -eu

dirs=""
sysconfdir=/usr/local/etc
missing=""
while getopts p:s:m: o; do
  case $o in
    p) dirs="$dirs -p $OPTARG" ;;
    s) sysconfdir=$OPTARG ;;
    m) missing=$OPTARG ;;
    *) echo "usage: $0 [-p DIR]... [-s SYSCONFDIR] [-m MISSING] VCGATE TEMPLATE NAME..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 3 ] || { echo "usage: $0 [-p DIR]... [-s SYSCONFDIR] [-m MISSING] VCGATE TEMPLATE NAME..." >&2; exit 2; }
vcgate=$1 template=$2
shift 2

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One mdoc section per table.  Fields of an option line: name, default
# (up to the first `;` that precedes the `#`), doc; then the trailing
# markers are peeled off the doc from the end, whatever their order.
to_mdoc() {
  awk -v section="$1" '
  function esc(s) { gsub(/\\/, "\\e", s); return s }
  function arg(s) { s = esc(s); gsub(/"/, "\\(dq", s); return "\"" s "\"" }
  function line(s) { s = esc(s); if (s ~ /^[.\047]/) s = "\\&" s; return s }
  function type_of(v) {
    if (v ~ /^-?[0-9]+L?$/) return "integer"
    if (v == "true" || v == "false") return "boolean"
    if (v ~ /^"/) return "string"
    if (v ~ /^\[/) return "list of strings"
    return ""
  }
  /^# / && NR == 1 {
    # "# NAME VERSION (KIND plugin, ABI M.N): DESCRIPTION"
    head = substr($0, 3)
    version = $3
    kind = $4; sub(/^\(/, "", kind)
    desc = head; sub(/^[^:]*: /, "", desc)
    next
  }
  /^# / { next }                       # the plugin file: build-tree specific
  # A nested group ("  admin = {" ... "  };"): its options are group.name.
  /^[ \t]+[A-Za-z_][A-Za-z0-9_]* = \{ *$/ {
    g = $0; sub(/^[ \t]+/, "", g); sub(/ = \{ *$/, "", g); prefix = prefix g "."; next
  }
  /^[ \t]+\}; *$/ { sub(/[A-Za-z0-9_]*\.$/, "", prefix); next }
  /^[ \t]+[A-Za-z_][A-Za-z0-9_.]* = / {
    s = $0; sub(/^[ \t]+/, "", s)
    name = s; sub(/ = .*/, "", name)
    rest = substr(s, length(name) + 4)
    if (!match(rest, /; *#/)) { bad = bad "\n  " $0; next }
    value = substr(rest, 1, RSTART - 1)
    doc = substr(rest, RSTART + RLENGTH); sub(/^ /, "", doc)
    range = ""; unset = 0; restart = 0
    for (;;) {
      if (match(doc, / *\(restart\)$/)) { restart = 1 }
      else if (match(doc, / *\(unset\)$/)) { unset = 1 }
      else if (match(doc, / *\[-?[0-9]+\.\.-?[0-9]+\]$/)) {
        range = substr(doc, RSTART, RLENGTH); sub(/^ *\[/, "", range); sub(/\]$/, "", range)
      } else break
      doc = substr(doc, 1, RSTART - 1)
    }
    t = type_of(value)
    if (t == "") { bad = bad "\n  " $0; next }
    n++
    names[n] = prefix name; values[n] = value; docs[n] = doc; types[n] = t
    ranges[n] = range; unsets[n] = unset; restarts[n] = restart
    next
  }
  { other = other $0 "\n" }
  END {
    if (bad != "") { print "gen-vcgate-conf: " section ": cannot parse:" bad > "/dev/stderr"; exit 1 }
    if (section == "core") {
      print ".Ss core"
      print "The group"
      print ".Ql core = { ... } ;"
      print "of the process."
    } else {
      print ".Ss " section
      print line(desc) "."
      print "Version " version " of this " kind " plugin is configured by"
      if (kind == "transport") print "a group in the"; else print "the"
      print ".Cm " (kind == "transport" ? "transports" : "bus")
      print (kind == "transport" ? "list" : "group") " with"
      print ".Ql plugin = \\(dq" section "\\(dq ."
    }
    if (n == 0) { print "It has no options of its own."; exit 0 }
    print ".Bl -tag -width Ds"
    for (i = 1; i <= n; i++) {
      print ".It Cm " names[i] " Pq " types[i]
      d = docs[i]; if (d != "" && d !~ /[.!?]$/) d = d "."
      if (d != "") print line(d)
      if (unsets[i]) print "Default: unset."
      else { print "Default:"; print ".Ql " arg(values[i]) " ." }
      if (ranges[i] != "") {
        split(ranges[i], r, /\.\./)
        print "Range: " r[1] " to " r[2] "."
      }
      if (restarts[i]) print "Needs a restart: a reload that changes it is rejected."
      else print "Reloads: a changed value applies on SIGHUP."
    }
    print ".El"
  }'
}

: >"$tmp/options"
for name in "$@"; do
  # shellcheck disable=SC2086  # $dirs is a list of -p DIR pairs
  if ! VCGATE_PLUGIN_PATH= "$vcgate" $dirs -P "$name" >"$tmp/$name.txt" 2>"$tmp/$name.err"; then
    echo "gen-vcgate-conf: $vcgate -P $name failed:" >&2
    cat "$tmp/$name.err" >&2
    exit 1
  fi
  to_mdoc "$name" <"$tmp/$name.txt" >>"$tmp/options"
done
if [ -n "$missing" ]; then
  {
    echo ".Ss Plugins not in this build"
    echo "This build of"
    echo ".Xr vcgate 8"
    echo "has no plugin named:"
    for m in $missing; do echo ".Cm $m"; done | sed '$!s/$/ ,/'
    echo "(their dependencies were missing when it was configured)."
  } >>"$tmp/options"
fi

grep -q '^@OPTIONS@$' "$template" || { echo "gen-vcgate-conf: $template has no @OPTIONS@ line" >&2; exit 1; }
awk -v opts="$tmp/options" -v etc="$sysconfdir" '
  $0 == "@OPTIONS@" { while ((getline l < opts) > 0) print l; next }
  { gsub(/@sysconfdir@/, etc); print }' "$template"
