// password_check: Teaclave's check of one password against a list of exposed ones.
#include <string>

#include "functions/registry.hpp"
#include "functions/text.hpp"

namespace mesatee::functions {
namespace {

Bytes run_password_check(const Arguments&, const Inputs& inputs, Outputs&) {
    auto password = lines(inputs.at("password"), "password");
    if (password.size() != 1) bad_line("password", 2, "the password input holds one line");
    bool exposed = false;
    for (std::string_view candidate : lines(inputs.at("exposed_passwords"), "exposed_passwords"))
        exposed |= candidate == password[0];
    return text_bytes(exposed ? "true" : "false");
}

}  // namespace

const Function& password_check() {
    static const Function fn{"password_check", 1, "Says whether a password is among the exposed ones: true or false.",
                             {},
                             {{"password", false, "the password, one line"},
                              {"exposed_passwords", false, "one exposed password per line"}},
                             {},
                             run_password_check};
    return fn;
}

namespace {
const Registration registered_password_check(password_check());
}  // namespace

}  // namespace mesatee::functions
