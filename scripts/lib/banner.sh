# Sourced by the e2e scripts: the loud banner on stderr when a run cannot be done or does not pass.
#
#   banner_for e2e-n8n "The end-to-end tests against a real n8n did NOT run."
#   loud "npm is not installed"     prints the banner: "!! e2e-n8n: npm is not installed", then the sentence
#   fail "Redis did not start"      the same banner, then exit 1
#
# banner_for names the script and says what did not run (or pass); call it once, before loud or fail.

BANNER_SCRIPT=""
BANNER_NOT_DONE=""

banner_for() {
    BANNER_SCRIPT="$1"
    BANNER_NOT_DONE="$2"
}

loud() {
    {
        echo
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo "!! $BANNER_SCRIPT: $*"
        echo "!! $BANNER_NOT_DONE"
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo
    } >&2
}

fail() {
    loud "$*"
    exit 1
}
