package validate

import "errors"

// testNumberPrefix starts numbers that are widely used as made-up examples;
// DESIGN.md rejects them even when the check digit happens to work.
const testNumberPrefix = "123456789"

// NHSNumber checks s as an NHS number and returns its 10 digits. It accepts
// exactly 10 digits, or the 3-3-4 layout with single spaces ("943 476 5919")
// in which the number is usually printed.
//
// The check digit is Modulus 11: digits 1 to 9 are weighted 10 down to 2 and
// summed; 11 - (sum mod 11) must equal digit 10, where 11 stands for 0 and 10
// means no valid number has these first nine digits.
//
// Errors never contain s: it is patient data.
func NHSNumber(s string) (string, error) {
	digits, ok := nhsDigits(s)
	if !ok {
		return "", errors.New(`must be 10 digits, optionally spaced 3-3-4 ("943 476 5919")`)
	}
	if digits[:len(testNumberPrefix)] == testNumberPrefix {
		return "", errors.New("is not a valid NHS number (numbers starting 123456789 are reserved examples)")
	}
	if !checkDigitOK(digits) {
		return "", errors.New("check digit does not match")
	}
	return digits, nil
}

// nhsDigits returns the 10 digits of s if s is 10 digits, or 3-3-4 digits
// separated by single spaces.
func nhsDigits(s string) (string, bool) {
	if len(s) == 12 && s[3] == ' ' && s[7] == ' ' {
		s = s[:3] + s[4:7] + s[8:]
	}
	if len(s) != 10 {
		return "", false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return "", false
		}
	}
	return s, true
}

// checkDigitOK applies Modulus 11 to ten ASCII digits.
func checkDigitOK(d string) bool {
	sum := 0
	for i := range 9 {
		sum += int(d[i]-'0') * (10 - i)
	}
	check := 11 - sum%11
	switch check {
	case 11:
		check = 0
	case 10:
		return false
	}
	return int(d[9]-'0') == check
}
