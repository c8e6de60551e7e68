#!/bin/bash
# Process churn for agent soak runs: interpreters, a compiler, shell tools.
# Usage: load.sh SECONDS
set -u
end=$((SECONDS + $1))
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo 'int f(int x){return x*3;} int main(){volatile long s=0; for(long i=0;i<30000000;i++) s+=f(i); return 0;}' > "$dir/w.c"
while [ $SECONDS -lt $end ]; do
  python3 -c 'import json,re; s=0
for i in range(300000): s+=len(str(i))'
  perl -e 'my $s=0; for (1..300000){$s+=length("$_")}'
  gcc -O1 -o "$dir/w" "$dir/w.c" && "$dir/w"
  ls -R /usr/lib > /dev/null
  go version > /dev/null 2>&1
  sleep 0.2
done
