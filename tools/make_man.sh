#!/bin/bash
# Writes onnxtl.1 from the binary's own --help texts, so the manual and
# --help cannot drift: the top-level text becomes NAME and the
# sections its "heading:" lines start (COMMANDS, EXIT STATUS, ENVIRONMENT),
# and each command's --help a subsection of COMMAND OPTIONS.
# usage: tools/make_man.sh ONNXTL VERSION > onnxtl.1
set -eu
onnxtl=$1 version=$2

roff_escape() { # backslashes, and the dots and quotes that would start a request
    sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"
}

# One section per "heading:" line at the start of a line; text between them verbatim.
sections() {
    awk '
        /^[a-z][a-z ]*:$/ { sub(":$", ""); print ".SH " toupper($0); print ".nf"; open = 1; next }
        open { print }
        END { if (open) print ".fi" }
    ' | sed 's/^\.SH/.fi\n.SH/' | sed '1{/^\.fi$/d}'
}

top=$("$onnxtl" --help)
echo ".TH ONNXTL 1 \"\" \"onnxtl $version\" \"User Commands\""
echo ".SH NAME"
echo "onnxtl \\- $(printf '%s\n' "$top" | head -1 | sed 's/^onnxtl [^:]*: //')"
echo ".SH SYNOPSIS"
echo ".B onnxtl"
echo ".I COMMAND"
echo "[options]"
printf '%s\n' "$top" | sed -n '/^commands:$/,$p' | roff_escape | sections
echo ".SH COMMAND OPTIONS"
for cmd in $(printf '%s\n' "$top" | sed -n '/^commands:$/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p'); do
    echo ".SS $cmd"
    echo ".nf"
    "$onnxtl" "$cmd" --help | roff_escape
    echo ".fi"
done
