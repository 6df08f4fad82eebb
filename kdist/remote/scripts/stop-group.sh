# shellcheck shell=sh
# Shell functions shared by guard.sh, watchdog.sh and kill-attempt.sh; kdist puts this file in
# front of each of them (kdist/remote/hostside.py), since nothing is installed on build hosts.
# Their variables start with an underscore and the function's name: POSIX sh has no `local`,
# and the scripts that call them have variables of their own.

# kdist_group_alive PGID: true while process group PGID has a member that is not a zombie.
kdist_group_alive() {
  kill -s 0 -- "-$1" 2>/dev/null || return 1
  # Zombies still answer signal 0; without /proc (macOS, BSD) that answer has to do.
  [ -r /proc/self/stat ] || return 0
  _alive_pgid=$1
  for _alive_proc in /proc/[0-9]*; do
    read -r _alive_stat 2>/dev/null <"$_alive_proc/stat" || continue
    # /proc/PID/stat is "PID (COMMAND) STATE PPID PGRP ...", and COMMAND may hold spaces
    # and parentheses: cut after the last ") ", then $1 is the state and $3 the group.
    # shellcheck disable=SC2086 # splitting the fields into $1 $2 $3 ... is the point
    set -- ${_alive_stat##*") "}
    [ "$3" = "$_alive_pgid" ] && [ "$1" != Z ] && [ "$1" != X ] && return 0
  done
  return 1
}

# kdist_stop_group PGID GRACE: SIGTERM the group, give it GRACE seconds, then SIGKILL it.
# False only when the group survives SIGKILL; GRACE 0 sends SIGKILL at once.
kdist_stop_group() {
  # An empty or damaged pgid file must never become `kill -- -1` (every process we may signal)
  # or `kill -- -0` (our own group).
  case $1 in "" | *[!0-9]* | 0* | 1) return 0 ;; esac
  kdist_group_alive "$1" || return 0
  # Poll ten times a second where sleep takes fractions (POSIX only promises whole seconds).
  _stop_tick=0.1 _stop_ticks_per_second=10
  sleep 0.01 2>/dev/null || { _stop_tick=1 _stop_ticks_per_second=1; }
  _stop_ticks_left=$(($2 * _stop_ticks_per_second))
  if [ "$_stop_ticks_left" -gt 0 ]; then
    kill -s TERM -- "-$1" 2>/dev/null
    # A stopped member (SIGSTOP, Ctrl-Z) would hold the TERM until it is continued.
    kill -s CONT -- "-$1" 2>/dev/null
    while [ "$_stop_ticks_left" -gt 0 ] && kdist_group_alive "$1"; do
      sleep "$_stop_tick"
      _stop_ticks_left=$((_stop_ticks_left - 1))
    done
  fi
  kdist_group_alive "$1" || return 0
  kill -s KILL -- "-$1" 2>/dev/null
  # SIGKILL cannot be caught, but the kernel may take a moment (a process in disk sleep).
  _stop_ticks_left=$((2 * _stop_ticks_per_second))
  while [ "$_stop_ticks_left" -gt 0 ] && kdist_group_alive "$1"; do
    sleep "$_stop_tick"
    _stop_ticks_left=$((_stop_ticks_left - 1))
  done
  ! kdist_group_alive "$1"
}
