//! TEMPORARY stand-in for the lead's `accounts::phone` (same API), so that the OTP module
//! compiles before that module lands on main. Replaced wholesale by the merge of main.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phone {
    e164: String,
}

#[derive(Debug, thiserror::Error)]
#[error("not a phone number")]
pub struct PhoneError;

pub fn normalise(input: &str) -> Result<Phone, PhoneError> {
    let digits: String = input.chars().filter(|c| c.is_ascii_digit()).collect();
    let e164 = if input.trim_start().starts_with('+') {
        format!("+{digits}")
    } else if let Some(rest) = digits.strip_prefix('0') {
        format!("+84{rest}")
    } else {
        return Err(PhoneError);
    };
    if e164.len() < 8 {
        return Err(PhoneError);
    }
    Ok(Phone { e164 })
}

impl Phone {
    pub fn e164(&self) -> &str {
        &self.e164
    }
    pub fn national(&self) -> String {
        match self.e164.strip_prefix("+84") {
            Some(rest) => format!("0{rest}"),
            None => self.e164.clone(),
        }
    }
    pub fn masked(&self) -> String {
        let tail = &self.e164[self.e164.len() - 3..];
        format!("{}…{tail}", &self.e164[..5])
    }
    pub fn is_vietnamese_mobile(&self) -> bool {
        self.e164.starts_with("+84")
            && self.e164.len() == 12
            && matches!(&self.e164[3..4], "3" | "5" | "7" | "8" | "9")
    }
    pub fn prefix(&self) -> String {
        if self.e164.starts_with("+84") {
            self.national()[..3].to_string()
        } else {
            self.e164[1..3].to_string()
        }
    }
}
