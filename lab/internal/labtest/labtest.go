// Package labtest makes the world the lab's package tests share: 1000
// domains of seed 7, where every case of the table occurs (at least three
// domains each), with its certificate authority and its truth.
package labtest

import (
	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/truth"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// Params are the shared world's.
var Params = world.Params{Domains: 1000, Seed: 7}

// STSPort is the MTA-STS port the shared truth assumes.
const STSPort = 8443

// World makes the shared world and its authority, and states its truth for
// a scan of SMTP port port.
func World(port int) (*world.World, *pki.Authority, *truth.Truth, error) {
	w, err := world.New(Params)
	if err != nil {
		return nil, nil, nil, err
	}
	auth, err := pki.New(w.Seed())
	if err != nil {
		return nil, nil, nil, err
	}
	tr, err := truth.NewStater(w, auth, port, STSPort).All()
	if err != nil {
		return nil, nil, nil, err
	}
	return w, auth, tr, nil
}
