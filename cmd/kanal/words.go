package main

import "strconv"

// plural is kanal's one plural rule for what it counts: "1 device",
// "2 devices", "0 devices". A noun whose plural is not noun+"s" is given
// as "singular|plural".
func plural(n int, noun string) string {
	one, many := noun, noun+"s"
	for i := 0; i < len(noun); i++ {
		if noun[i] == '|' {
			one, many = noun[:i], noun[i+1:]
			break
		}
	}
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
