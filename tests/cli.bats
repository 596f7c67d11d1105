#!/usr/bin/env bats
# The command line itself: help, version, unknown commands, exit codes.

load helpers

@test "p2v --help lists the commands and exit codes" {
  run p2v --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"convert"* ]]
  [[ "$output" == *"verify"* ]]
  [[ "$output" == *"exit codes"* ]]
}

@test "p2v --version prints the version" {
  run p2v --version
  [ "$status" -eq 0 ]
  [[ "$output" =~ ^p2v\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "p2v help convert shows convert's options" {
  run p2v help convert
  [ "$status" -eq 0 ]
  [[ "$output" == *"--compress"* ]]
  [[ "$output" == *"--cluster-size"* ]]
  run p2v convert --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"--force"* ]]
}

@test "an unknown command is an error naming it" {
  run p2v frobnicate
  [ "$status" -eq 2 ]
  [[ "$output" == "p2v: unknown command 'frobnicate'"* ]]
}

@test "no arguments is a usage error" {
  run p2v
  [ "$status" -eq 2 ]
}

@test "convert without -o says what is missing" {
  run p2v convert x.img
  [ "$status" -eq 2 ]
  [[ "$output" == *"missing output"* ]]
}

@test "man page and install" {
  requires man
  make -C "$TOP_DIR" install PREFIX="$T/prefix" >/dev/null
  [ -x "$T/prefix/bin/p2v" ]
  [ -f "$T/prefix/share/man/man1/p2v.1" ]
  run man -l "$T/prefix/share/man/man1/p2v.1"
  [ "$status" -eq 0 ]
  [[ "$output" == *"convert"* ]]
}
