# Release the model key only to a guest whose evidence the attestation service affirmed
# (hardware evidence matching the reference values), never to Trustee's sample attester.
# Upload with: kbs-client --url https://kbs:8080 config --auth-private-key admin.key \
#   set-resource-policy --policy-file config/trustee/resource-policy.rego
package policy
import rego.v1

default allow = false

allow if {
    data.plugin == "resource"
    data["resource-path"] == ["default", "models", "smollm2"]
    count(input.submods) > 0
    not any_not_affirming
    not input.submods.cpu0["ear.veraison.annotated-evidence"].sample
}

any_not_affirming if {
    some _, submod in input.submods
    submod["ear.status"] != "affirming"
}
