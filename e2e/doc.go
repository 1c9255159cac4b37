// Package e2e holds the end-to-end tests that tie the stages together: a lab
// with known truth, a scan of it, and the analysis of that scan, compared
// field by field and figure by figure. The truth is the lab's own statement
// from its configuration; nothing here calls the scanner's parsers or the
// analyzer's matcher to compute what is expected.
//
// Rows are compared column by column without a hand-kept list: a column of
// the dataset is held to the truth field of the same name, or listed with
// the reason it has none (columns_test.go).
package e2e
