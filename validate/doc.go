// Package validate checks client-supplied care plans against the rules in
// DESIGN.md "Validation (C)" before anything reaches the policy or the store.
//
// Checks return every violation at once, as field paths in proto snake_case
// ("care_plan.goals[2].owner.ods_code"), so that a caller can fix a request
// in one round trip and the server can build a google.rpc.BadRequest from
// them directly. Messages never repeat the offending value: an NHS number or
// a name in an error would leak patient data into logs and client UIs.
package validate
