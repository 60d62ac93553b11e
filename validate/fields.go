package validate

import (
	"errors"
	"regexp"
	"strings"
	"time"
)

// odsPattern is checked before uppercasing: strings.ToUpper maps some
// non-ASCII letters to ASCII ones ("ı" to "I"), which must not slip through.
var odsPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,9}$`)

// ODSCode uppercases s and checks it as an ODS organisation code. Codes are
// stored upper case so that comparisons in the access policy are exact.
func ODSCode(s string) (string, error) {
	if !odsPattern.MatchString(s) {
		return "", errors.New("must be 1 to 9 letters or digits")
	}
	return strings.ToUpper(s), nil
}

const dateLayout = "2006-01-02"

// Date checks that s is YYYY-MM-DD and a real calendar date (2024-02-29 is,
// 2025-02-29 is not).
func Date(s string) error {
	_, err := parseDate(s)
	return err
}

// parseDate checks the shape byte by byte before calling time.Parse, which on
// its own accepts signs in the year ("+999-01-01").
func parseDate(s string) (time.Time, error) {
	bad := errors.New("must be a calendar date, YYYY-MM-DD")
	if len(s) != len(dateLayout) {
		return time.Time{}, bad
	}
	for i := range len(s) {
		want := s[i] >= '0' && s[i] <= '9'
		if i == 4 || i == 7 {
			want = s[i] == '-'
		}
		if !want {
			return time.Time{}, bad
		}
	}
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return time.Time{}, bad
	}
	return t, nil
}

// latestToday is today's date where it is latest on Earth (UTC+14). A birth
// date is "in the future" only if it is after that: a UK birth recorded just
// after midnight BST is still yesterday in UTC, and must not be rejected.
func latestToday() string {
	return time.Now().UTC().Add(14 * time.Hour).Format(dateLayout)
}
