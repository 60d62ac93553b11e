package store

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// StoredPlan is the current version of a plan as stored, with what a read
// decision needs. A read answers with Body as it is: decoding the plan and
// encoding it again cost more CPU than the rest of the read.
type StoredPlan struct {
	// Body is the CarePlan's protobuf encoding, exactly as stored.
	Body    []byte
	Version int64
	// Facts are for the organisation named in the GetStored call.
	Facts policy.ReadFacts
}

// NewStoredPlan fills a StoredPlan from the stored body. related is the
// store's answer from its organisation index, kept in the same transaction
// as the version (see policy.RelatedOrgs).
func NewStoredPlan(body []byte, version int64, related bool) (*StoredPlan, error) {
	objection, err := sharingObjection(body)
	if err != nil {
		return nil, fmt.Errorf("decode plan version: %w", err)
	}
	return &StoredPlan{Body: body, Version: version, Facts: policy.ReadFacts{Related: related, SharingObjection: objection}}, nil
}

// sharingObjectionField is CarePlan.sharing_objection's field number, taken
// from the descriptor rather than written down twice.
var sharingObjectionField = (&careplanv1.CarePlan{}).ProtoReflect().Descriptor().Fields().ByName("sharing_objection").Number()

// sharingObjection reads sharing_objection from an encoded CarePlan. It
// walks the top-level fields only, skipping nested messages whole, so it
// allocates nothing. As in any decode, the last occurrence wins.
func sharingObjection(body []byte) (bool, error) {
	var v bool
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return false, protowire.ParseError(n)
		}
		body = body[n:]
		if num == sharingObjectionField && typ == protowire.VarintType {
			x, m := protowire.ConsumeVarint(body)
			if m < 0 {
				return false, protowire.ParseError(m)
			}
			v, body = x != 0, body[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, body)
		if m < 0 {
			return false, protowire.ParseError(m)
		}
		body = body[m:]
	}
	return v, nil
}
