// Package storetest writes datasets for the tests of their readers: as
// earlier versions of mxsurvey wrote them, for every reader that must still
// read them (package store, the analyzer), and any table in one call. It is
// not for production code: a scanner writes only the current version.
package storetest

import (
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// MXRowV1 is survey.MXRow as schema version 1 wrote it: the columns before
// mx_dnssec, mx_host_cnames and addr_dnssec.
type MXRowV1 struct {
	Domain       string    `parquet:"domain,dict"`
	Rank         int64     `parquet:"rank"`
	Input        string    `parquet:"input"`
	DNSStatus    string    `parquet:"dns_status,dict"`
	DNSError     string    `parquet:"dns_error"`
	ImplicitMX   bool      `parquet:"implicit_mx"`
	CNAMEs       []string  `parquet:"cnames,list"`
	MXHost       string    `parquet:"mx_host,dict"`
	MXPreference int32     `parquet:"mx_preference"`
	MXHostStatus string    `parquet:"mx_host_status,dict"`
	MXHostError  string    `parquet:"mx_host_error"`
	IP           string    `parquet:"ip,dict"`
	IPVersion    int32     `parquet:"ip_version"`
	ResolvedAt   time.Time `parquet:"resolved_at,timestamp(millisecond)"`
}

// V1 is the version-1 form of r; the columns version 1 lacks are dropped.
func V1(r survey.MXRow) MXRowV1 {
	return MXRowV1{Domain: r.Domain, Rank: r.Rank, Input: r.Input, DNSStatus: r.DNSStatus, DNSError: r.DNSError,
		ImplicitMX: r.ImplicitMX, CNAMEs: r.CNAMEs, MXHost: r.MXHost, MXPreference: r.MXPreference,
		MXHostStatus: r.MXHostStatus, MXHostError: r.MXHostError, IP: r.IP, IPVersion: r.IPVersion, ResolvedAt: r.ResolvedAt}
}

// WriteMXV1 writes rows as one version-1 mx part of the scan in dir (its
// probes table did not change, and version 1 had no other).
func WriteMXV1(dir string, rows []survey.MXRow) error {
	v1 := make([]MXRowV1, len(rows))
	for i, r := range rows {
		v1[i] = V1(r)
	}
	return WriteTable(survey.MXDir(dir), v1)
}

// WriteTable writes rows as one committed part of the table in dir.
func WriteTable[T any](dir string, rows []T) error {
	w, err := store.NewPartWriter[T](dir, store.PartOptions{})
	if err != nil {
		return err
	}
	if err := w.Write(rows); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}
