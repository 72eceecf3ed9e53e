#!/usr/bin/perl
# SPDX-License-Identifier: LGPL-2.1-or-later
# A migration transport under the test's control: dmctl migrate --to runs
# "exec perl migrate-relay.pl --in FIFO --out FIFO [faults]". Lines from
# stdin (the sender) go to --in (a receiver's stdin), lines from --out (its
# stdout) go to stdout. Faults, by the number N of the sender's line
# (1 = prepare, 2 = finish):
#   --die-after N      forward line N, then exit at once (transport dies
#                      right after carrying it)
#   --drop-at N        exit before forwarding line N
#   --kill-sender-at N SIGKILL the sender (our parent), then exit without
#                      forwarding line N
#   --stop-pid P --stop-at N   SIGSTOP process P, then forward line N
#   --int-sender-at N  SIGINT the sender (as migrate-cancel does), wait
#                      --int-wait-ms (default 300), then forward line N
#   --log FILE         append "down N PHASE" / "up PHASE" per line
use strict;
use warnings;
use Getopt::Long;
use IO::Select;
use IO::Handle;

my ($in, $out, $die_after, $drop_at, $kill_at, $stop_pid, $stop_at, $log) =
    ('', '', 0, 0, 0, 0, 0, '');
my ($int_at, $int_wait) = (0, 300);
GetOptions('in=s' => \$in, 'out=s' => \$out, 'die-after=i' => \$die_after,
           'drop-at=i' => \$drop_at, 'kill-sender-at=i' => \$kill_at,
           'stop-pid=i' => \$stop_pid, 'stop-at=i' => \$stop_at, 'log=s' => \$log,
           'int-sender-at=i' => \$int_at, 'int-wait-ms=i' => \$int_wait)
    or exit 2;
$SIG{PIPE} = 'IGNORE';
my $sender = getppid();
open(my $to_rx, '>', $in) or die "relay: $in: $!";
open(my $from_rx, '<', $out) or die "relay: $out: $!";
$to_rx->autoflush(1);
STDOUT->autoflush(1);

sub note {
    return unless $log;
    open(my $l, '>>', $log) or return;
    print $l "@_\n";
    close($l);
}

sub phase { my ($l) = @_; return $l =~ /"phase":"([a-z]+)"/ ? $1 : '?'; }

my $sel = IO::Select->new(\*STDIN, $from_rx);
my ($down, $bufd, $bufu) = (0, '', '');
while (1) {
    for my $fh ($sel->can_read()) {
        my $n = sysread($fh, my $chunk, 65536);
        if (!$n) {
            note('eof', $fh == $from_rx ? 'up' : 'down');
            exit 0;
        }
        if ($fh == $from_rx) {
            $bufu .= $chunk;
            while ($bufu =~ s/^([^\n]*\n)//) {
                note('up', phase($1));
                syswrite(STDOUT, $1);
            }
            next;
        }
        $bufd .= $chunk;
        while ($bufd =~ s/^([^\n]*\n)//) {
            my $line = $1;
            $down++;
            note('down', $down, phase($line));
            exit 0 if $drop_at && $down == $drop_at;
            if ($kill_at && $down == $kill_at) {
                kill 'KILL', $sender;
                exit 0;
            }
            kill 'STOP', $stop_pid if $stop_at && $down == $stop_at;
            if ($int_at && $down == $int_at) {
                kill 'INT', $sender;
                select(undef, undef, undef, $int_wait / 1000);
            }
            print $to_rx $line;
            exit 0 if $die_after && $down == $die_after;
        }
    }
}
