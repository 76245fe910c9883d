//go:build race

package geocache

// raceEnabled scales the long tests down under the race detector, which
// runs them 10-20 times slower: they keep every case, with fewer addresses.
const raceEnabled = true
