// Package domains reads the input of a scan: the list of domains whose mail
// servers mxsurvey measures. (The scan's output, the survey dataset, is
// package survey's; the two are kept apart by name so input is never taken
// for output.)
//
// Three input forms are supported, each plain or gzip-compressed (detected by
// the magic bytes 1f 8b, never by the file name):
//
//   - a list: one domain per line; blank lines and lines starting with '#'
//     are ignored;
//   - CSV "rank,domain", the form of the usual top lists (Tranco, Alexa,
//     Umbrella, e.g. "1,google.com"); extra columns are ignored and one
//     header line such as "rank,domain" is tolerated;
//   - a DNS master file (RFC 1035 §5) as TLD operators publish it: the
//     owners of NS records other than the zone apex (the delegated names)
//     are the domains.
//
// Input is streamed: a Reader holds one line (at most 64 KiB of buffer) at a
// time, never the whole list. Every domain is normalised by [Normalize]
// (lower case, no trailing dot, IDNA A-labels per RFC 5891 / UTS #46, host
// name syntax per RFC 1123 §2.1 with underscores tolerated, labels starting
// and ending with a letter or digit per RFC 5321 §4.1.2). A line that is
// not a valid domain is never dropped: it becomes an [Entry] whose Err says
// why, so that the scan can record it as a row of its own.
//
// [Dedup] remembers which domains were already seen, in about 10–20 bytes per
// domain, so a list with repeats is scanned once per domain.
package domains
