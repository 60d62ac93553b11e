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
	Body      []byte
	NhsNumber string
	Version   int64
	// Facts are for the organisation the caller asked about (GetStored),
	// or for the listing organisation (ListPlans).
	Facts policy.ReadFacts
}

// NewStoredPlan fills a StoredPlan from the stored body. related is the
// store's answer from its organisation index, kept in the same transaction
// as the version (see policy.RelatedOrgs).
func NewStoredPlan(body []byte, related bool) (*StoredPlan, error) {
	sp := &StoredPlan{Body: body, Facts: policy.ReadFacts{Related: related}}
	if err := scanTop(body, sp); err != nil {
		return nil, fmt.Errorf("decode plan version: %w", err)
	}
	return sp, nil
}

// Field numbers of the CarePlan fields scanTop reads, from the descriptor
// rather than written down twice.
var (
	planFields       = (&careplanv1.CarePlan{}).ProtoReflect().Descriptor().Fields()
	nhsNumberField   = planFields.ByName("nhs_number").Number()
	versionField     = planFields.ByName("version").Number()
	sharingObjection = planFields.ByName("sharing_objection").Number()
)

// scanTop reads nhs_number, version and sharing_objection from an encoded
// CarePlan into sp. It walks the top-level fields only, skipping nested
// messages whole, so it allocates little. As in any decode, the last
// occurrence of a field wins.
func scanTop(body []byte, sp *StoredPlan) error {
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return protowire.ParseError(n)
		}
		body = body[n:]
		switch {
		case typ == protowire.VarintType && (num == versionField || num == sharingObjection):
			x, m := protowire.ConsumeVarint(body)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if num == versionField {
				sp.Version = int64(x)
			} else {
				sp.Facts.SharingObjection = x != 0
			}
			body = body[m:]
		case typ == protowire.BytesType && num == nhsNumberField:
			b, m := protowire.ConsumeBytes(body)
			if m < 0 {
				return protowire.ParseError(m)
			}
			sp.NhsNumber = string(b)
			body = body[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, body)
			if m < 0 {
				return protowire.ParseError(m)
			}
			body = body[m:]
		}
	}
	return nil
}
