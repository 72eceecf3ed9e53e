#!/usr/bin/perl
# SPDX-License-Identifier: LGPL-2.1-or-later
# A second observer of a migration: its own QMP connections to the extra
# "-qmp unix:SOCK,server=on,wait=off" monitors of the QEMUs, never dmctl's.
#   status SOCK               the runstate, or "gone" (no QEMU answers)
#   migstatus SOCK            query-migrate's status ("none" before any)
#   cmd SOCK COMMAND [JSON]   runs a command; prints the return or error
#   wait-mig SOCK STATUS MS   waits until query-migrate says STATUS
#   watch SRC DST             until SIGTERM: samples both runstates every
#                             10 ms; prints "BOTH-RUNNING" lines when both
#                             run at once, and each change of the pair
use strict;
use warnings;
use IO::Socket::UNIX;
use IO::Select;
use Time::HiRes qw(time sleep);

sub qmp_open {
    my ($path) = @_;
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path) or return undef;
    my $c = { s => $s, buf => '' };
    return undef unless defined(qmp_read($c, 2, 'QMP'));
    return undef unless defined(qmp_call($c, 'qmp_capabilities'));
    return $c;
}

# Next message containing "$key" within $secs, skipping events.
sub qmp_read {
    my ($c, $secs, $key) = @_;
    my $end = time() + $secs;
    my $sel = IO::Select->new($c->{s});
    while (1) {
        while ($c->{buf} =~ s/^([^\n]*)\n//) {
            my $l = $1;
            return $l if $l =~ /"\Q$key\E"/;
        }
        my $left = $end - time();
        return undef if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($c->{s}, my $chunk, 65536);
        return undef unless $n;
        $c->{buf} .= $chunk;
    }
}

sub qmp_call {
    my ($c, $cmd, $args) = @_;
    my $msg = '{"execute":"' . $cmd . '"' . (defined $args ? ',"arguments":' . $args : '') . "}\n";
    return undef unless defined(syswrite($c->{s}, $msg));
    my $r = qmp_read($c, 5, 'return');
    return $r;
}

sub field {
    my ($l, $k) = @_;
    return defined $l && $l =~ /"\Q$k\E":\s*"([^"]*)"/ ? $1 : undef;
}

sub runstate {
    my ($c) = @_;
    my $r = qmp_call($c, 'query-status');
    return field($r, 'status') // 'gone';
}

my $mode = shift // '';
if ($mode eq 'status' || $mode eq 'migstatus') {
    my $c = qmp_open($ARGV[0]);
    if (!$c) { print "gone\n"; exit 0; }
    if ($mode eq 'status') { print runstate($c), "\n"; exit 0; }
    my $r = qmp_call($c, 'query-migrate');
    print((defined $r ? field($r, 'status') // 'none' : 'gone'), "\n");
    exit 0;
}
if ($mode eq 'cmd') {
    my $c = qmp_open($ARGV[0]) or die "observe: cannot connect to $ARGV[0]\n";
    syswrite($c->{s}, '{"execute":"' . $ARGV[1] . '"' .
             (defined $ARGV[2] ? ',"arguments":' . $ARGV[2] : '') . "}\n");
    my $r = qmp_read($c, 5, 'return') // qmp_read($c, 0, 'error');
    print(($r // 'no answer'), "\n");
    exit(defined $r ? 0 : 1);
}
if ($mode eq 'wait-mig') {
    my ($path, $want, $ms) = @ARGV;
    my $end = time() + $ms / 1000;
    my $c;
    while (time() < $end) {
        $c //= qmp_open($path);
        if ($c) {
            my $st = field(qmp_call($c, 'query-migrate'), 'status') // 'none';
            exit 0 if $st eq $want;
        }
        sleep(0.002);
    }
    exit 1;
}
if ($mode eq 'watch') {
    my @paths = @ARGV[0, 1];
    my @conn = (undef, undef);
    my $last = '';
    my $stop = 0;
    $SIG{TERM} = sub { $stop = 1 };
    STDOUT->autoflush(1);
    while (!$stop) {
        my @st;
        for my $i (0, 1) {
            $conn[$i] //= qmp_open($paths[$i]) if -S $paths[$i];
            my $rs = $conn[$i] ? runstate($conn[$i]) : 'gone';
            $conn[$i] = undef if $rs eq 'gone';
            push @st, $rs;
        }
        my $now = sprintf('%.3f', time());
        print "$now BOTH-RUNNING\n" if $st[0] eq 'running' && $st[1] eq 'running';
        if ("@st" ne $last) {
            print "$now @st\n";
            $last = "@st";
        }
        sleep(0.01);
    }
    exit 0;
}
die "usage: migrate-observe.pl status|migstatus|cmd|wait-mig|watch ...\n";
