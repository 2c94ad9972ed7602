#!/bin/sh
# usage: netns.sh up|down
set -e
D=pr-golden-d; C=pr-golden-c
if [ "$1" = up ]; then
  ip netns add $D; ip netns add $C
  ip link add pr-gd0 netns $D type veth peer name pr-gc0 netns $C
  ip -n $D addr add 198.18.0.1/24 dev pr-gd0; ip -n $D addr add fd00:198:18::1/64 dev pr-gd0 nodad
  ip -n $C addr add 198.18.0.2/24 dev pr-gc0; ip -n $C addr add fd00:198:18::2/64 dev pr-gc0 nodad
  ip -n $D link set lo up; ip -n $C link set lo up
  ip -n $D link set pr-gd0 up; ip -n $C link set pr-gc0 up
else
  ip netns del $D 2>/dev/null || true; ip netns del $C 2>/dev/null || true
fi
