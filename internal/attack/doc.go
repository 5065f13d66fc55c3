// Package attack holds the attack suite: it builds the real binary, starts
// `suppressd serve --role api,consumer` against the test command's Redis and
// Kafka, and attacks it the way the internet would: oversized and
// decompression-bomb bodies on every endpoint, slow clients (one byte of a
// body, then silence; headers that never end), more connections than the
// cap, floods of the public unsubscribe pages, malformed JSON and UTF-8, and
// missing, wrong and wrong-scope keys.
//
// Each case asserts the answer a client gets, that the process's memory
// stays under a bound (VmRSS and VmHWM of /proc/<pid>/status), and, at the
// end, that the topics hold exactly the events that legitimate requests
// published: nothing from an attack, nothing lost.
//
// Why serve and not `suppressd dev`: dev runs an embedded broker and store
// in its own process, whose memory would be counted with the service's and
// whose behaviour (acks, the publish log's Redis) is not production's. serve
// is the binary as deployed, configured only by the environment.
//
// The binary is built without the race detector, which multiplies memory
// use and would make the RSS bound meaningless.
package attack
