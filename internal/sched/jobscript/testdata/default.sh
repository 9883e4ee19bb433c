#!/bin/sh
# hpcgate job "j1" ("x\nrm -rf / #").
# This script only starts the agent. The job's parameters, inputs and
# command travel in its spec, which the agent fetches with the job token.
# Secrets (the token) are written below to files only this account can
# read (umask 077, a new file); the agent finds the token's file in HPCGATE_TOKEN_FILE.
umask 077
mkdir -p '/w/it'\''s' || exit 111
rm -f '/w/j1.secret.HPCGATE_TOKEN' && (set -C && printf '%s' 't'\''ok
en' > '/w/j1.secret.HPCGATE_TOKEN') || exit 111
cd '/w/it'\''s' || exit 111
exec '/opt/agent' 'run' '$(x)'
