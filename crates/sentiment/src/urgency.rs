//! Urgency cues read from an inbound message: what makes a support lead answer it before an
//! equally negative one. Sentiment says how unhappy a customer is; a cue says what they are about
//! to do (leave, go to a lawyer, escalate), that they have asked before, or that someone may be
//! hurt.
//!
//! Each cue is a list of phrases in the languages of the sentiment model (English, French, German,
//! Spanish, Italian, Portuguese, Arabic, and Hindi as customers type it: romanised and in
//! Devanagari). Texts and phrases are compared as words: lowercased, Latin accents folded
//! ("résilier" = "resilier", "kündigen" = "kundigen"), Arabic alef forms folded, apostrophes and
//! punctuation split words ("l'avocat" = "l avocat"). A phrase ending in `*` matches any word that
//! starts with its last word ("kundig*": "kündige", "Kündigung"). One Aho-Corasick pass finds every
//! phrase of every cue, so the cost does not grow with the number of phrases.
//!
//! The lists favour precision: a phrase goes in when it nearly always means the cue in a customer
//! message ("cancel my subscription", not "cancel"; "see you in court", not "court"). BENCHMARKS.md
//! ("Urgency cues") has how often each cue fires on tweets in each language.

use aho_corasick::AhoCorasick;
use std::sync::LazyLock;

/// One kind of urgency cue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum UrgencyCue {
    /// A threat to cancel, close the account or go to a competitor.
    CancelThreat = 0,
    /// A lawyer, a lawsuit, a regulator or a consumer body.
    LegalThreat = 1,
    /// Asks for a manager, a supervisor or an escalation.
    ManagerRequest = 2,
    /// Says they asked before ("third time I ask", "still waiting", "how many times").
    RepeatContact = 3,
    /// Someone may be hurt: fire, burns, injury, poisoning, electric shock.
    Safety = 4,
}

impl UrgencyCue {
    /// Every cue, in bit order.
    pub const ALL: [UrgencyCue; 5] = [
        UrgencyCue::CancelThreat,
        UrgencyCue::LegalThreat,
        UrgencyCue::ManagerRequest,
        UrgencyCue::RepeatContact,
        UrgencyCue::Safety,
    ];

    /// Stable snake_case name (metrics, reasons, the API).
    pub fn as_str(self) -> &'static str {
        match self {
            UrgencyCue::CancelThreat => "cancel_threat",
            UrgencyCue::LegalThreat => "legal_threat",
            UrgencyCue::ManagerRequest => "manager_request",
            UrgencyCue::RepeatContact => "repeat_contact",
            UrgencyCue::Safety => "safety",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of urgency cues (one bit per [`UrgencyCue`]).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct UrgencyCues(u8);

impl UrgencyCues {
    /// No cue.
    pub const NONE: UrgencyCues = UrgencyCues(0);

    /// The set whose bits are `bits`; bits of no known cue are dropped.
    pub fn from_bits(bits: u32) -> Self {
        let known = UrgencyCue::ALL.iter().fold(0u8, |all, cue| all | cue.bit());
        UrgencyCues((bits & u32::from(known)) as u8)
    }

    /// The bits of the set (bit `cue as u8` for each cue).
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }

    /// Whether the set holds `cue`.
    pub fn contains(self, cue: UrgencyCue) -> bool {
        self.0 & cue.bit() != 0
    }

    /// Whether the set holds no cue.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set with `cue` added.
    pub fn with(self, cue: UrgencyCue) -> Self {
        UrgencyCues(self.0 | cue.bit())
    }

    /// Both sets' cues.
    pub fn union(self, other: UrgencyCues) -> Self {
        UrgencyCues(self.0 | other.0)
    }

    /// The cues held, in [`UrgencyCue::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = UrgencyCue> {
        UrgencyCue::ALL
            .into_iter()
            .filter(move |cue| self.contains(*cue))
    }
}

impl FromIterator<UrgencyCue> for UrgencyCues {
    fn from_iter<I: IntoIterator<Item = UrgencyCue>>(cues: I) -> Self {
        cues.into_iter().fold(UrgencyCues::NONE, UrgencyCues::with)
    }
}

/// Objects whose cancellation is a customer leaving (not an order or a booking).
const CANCELLED_THINGS: &[&str] = &[
    // English
    "account",
    "subscription",
    "membership",
    "contract",
    "plan",
    "service",
    "policy",
    "line",
    // French, Spanish, Italian, Portuguese
    "abonnement",
    "contrat",
    "compte",
    "forfait",
    "adhesion",
    "suscripcion",
    "cuenta",
    "contrato",
    "plan",
    "abbonamento",
    "contratto",
    "account",
    "assinatura",
    "conta",
    "plano",
];

/// Verbs of cancelling, and the determiners between them and the thing cancelled.
const CANCEL_VERBS: &[&str] = &[
    "cancel",
    "cancelling",
    "canceling",
    "close",
    "closing",
    "terminate",
    "terminating",
    "annuler",
    "annule",
    "annulerai",
    "fermer",
    "cancelar",
    "cancelare",
    "cancellare",
    "cancello",
    "annullare",
    "annullo",
    "chiudere",
    "cerrar",
    "encerrar",
];
const CANCEL_DETERMINERS: &[&str] = &[
    "my", "our", "the", "mon", "ma", "notre", "mi", "la", "el", "il", "mio", "mia", "l", "lo",
    "minha", "meu", "o", "a",
];

/// Phrases of a threat to leave, besides "<cancel verb> <determiner> <thing>".
const CANCEL_THREAT: &[&str] = &[
    // English
    "going to cancel",
    "gonna cancel",
    "will cancel",
    "ll cancel",
    "about to cancel",
    "thinking of cancel*",
    "thinking about cancel*",
    "or i cancel",
    "take my business elsewhere",
    "taking my business elsewhere",
    "going elsewhere",
    "go elsewhere",
    "switching provider*",
    "switch provider*",
    "switching to a competitor",
    "to a competitor",
    "to your competitor*",
    "port my number",
    "porting my number",
    "never buy* from you again",
    "never order* from you again",
    "never using you again",
    "done with your company",
    "done with this company",
    "m done with you",
    "lost a customer",
    "lost me as a customer",
    "losing a customer",
    // French
    "resilier",
    "resilie",
    "resilies",
    "resilierai",
    "resiliation",
    "vais annuler",
    "changer d operateur",
    "changer de fournisseur",
    "changer de banque",
    "la concurrence",
    "je vous quitte",
    "vais vous quitter",
    "plus jamais chez vous",
    "perdu un client",
    // German
    "kundige",
    "kundigen",
    "kundigung*",
    "gekundigt",
    "zur konkurrenz",
    "anbieter wechseln",
    "anbieterwechsel",
    "den anbieter wechseln",
    "abo beenden",
    "abo kundigen",
    "vertrag beenden",
    "konto loschen",
    "einen kunden weniger",
    "kunde verloren",
    // Spanish
    "dar de baja",
    "darme de baja",
    "me doy de baja",
    "me di de baja",
    "voy a cancelar",
    "cambiarme de compania",
    "cambiar de compania",
    "la competencia",
    "portabilidad",
    "perdieron un cliente",
    "han perdido un cliente",
    // Italian
    "disdire",
    "disdetta",
    "disdico",
    "disdiro",
    "recedere",
    "recesso",
    "cambio operatore",
    "cambiare operatore",
    "cambio gestore",
    "cambiare gestore",
    "alla concorrenza",
    "perso un cliente",
    // Portuguese
    "vou cancelar",
    "rescindir",
    "rescisao",
    "portabilidade",
    "trocar de operadora",
    "mudar de operadora",
    "trocar de banco",
    "para a concorrencia",
    "nunca mais compro",
    "perderam um cliente",
    // Arabic
    "الغاء الاشتراك",
    "الغاء اشتراكي",
    "الغي الاشتراك",
    "الغاء العقد",
    "سالغي",
    "ساغير الشركه",
    "شركه اخرى",
    "المنافس",
    // Hindi (romanised and Devanagari)
    "cancel kar*",
    "port kar*",
    "connection band kar*",
    "account band kar*",
    "रद्द कर*",
    "पोर्ट कर*",
];

/// Phrases of a legal or regulatory threat.
const LEGAL_THREAT: &[&str] = &[
    // English
    "lawyer*",
    "attorney*",
    "solicitor*",
    "legal action",
    "legal advice",
    "take legal",
    "i will sue",
    "i ll sue",
    "going to sue",
    "gonna sue",
    "sue them",
    "sue you",
    "suing",
    "lawsuit*",
    "see you in court",
    "take you to court",
    "taking you to court",
    "small claims",
    "class action",
    "ombudsman",
    "regulator",
    "trading standards",
    "consumer protection",
    "better business bureau",
    "ftc",
    "fcc",
    "cfpb",
    "ofcom",
    "ofgem",
    "report you to",
    "chargeback",
    // French
    "avocat*",
    "porter plainte",
    "porte plainte",
    "deposer plainte",
    "poursuites",
    "poursuivre en justice",
    "en justice",
    "au tribunal",
    "mediateur",
    "que choisir",
    "dgccrf",
    "arcep",
    "mise en demeure",
    "association de consommateurs",
    // German
    "anwalt*",
    "rechtsanwalt*",
    "verklag*",
    "klage einreichen",
    "vor gericht",
    "verbraucherzentrale",
    "verbraucherschutz",
    "schlichtungsstelle",
    "bundesnetzagentur",
    "rechtliche schritte",
    "abmahnung",
    // Spanish
    "abogad*",
    "demandar*",
    "los voy a demandar",
    "denunci*",
    "tribunal",
    "juzgado",
    "accion legal",
    "acciones legales",
    "via judicial",
    "oficina del consumidor",
    "omic",
    "profeco",
    "hoja de reclamaciones",
    // Italian
    "avvocat*",
    "tribunale",
    "vie legali",
    "azione legale",
    "carta bollata",
    "agcom",
    "codacons",
    "altroconsumo",
    // Portuguese
    "advogad*",
    "vou processar",
    "processar voces",
    "processo judicial",
    "acao judicial",
    "na justica",
    "procon",
    "reclame aqui",
    "anatel",
    "juizado",
    // Arabic
    "محامي",
    "محامى",
    "المحكمه",
    "محكمه",
    "دعوى",
    "حمايه المستهلك",
    "شكوى رسميه",
    // Hindi
    "consumer court",
    "consumer forum",
    "legal notice",
    "vakil",
    "wakil",
    "police complaint",
    "वकील",
    "अदालत",
    "उपभोक्ता",
];

/// Phrases asking for someone above the agent.
const MANAGER_REQUEST: &[&str] = &[
    // English
    "a manager",
    "the manager",
    "your manager",
    "to manager",
    "supervisor",
    "escalate",
    "escalated",
    "escalating",
    "escalation",
    "your boss",
    "someone in charge",
    "someone senior",
    "someone higher up",
    "head of customer",
    "complaints department",
    "your ceo",
    // French
    "un responsable",
    "le responsable",
    "votre responsable",
    "votre superieur",
    "un superieur",
    "votre direction",
    "service reclamation*",
    // German
    "vorgesetzt*",
    "ihren chef",
    "euren chef",
    "teamleiter*",
    "geschaftsfuhr*",
    "beschwerdestelle",
    "eskalier*",
    // Spanish
    "supervisora",
    "encargado",
    "encargada",
    "gerente",
    "tu jefe",
    "su jefe",
    "un responsable",
    // Italian
    "supervisore",
    "il responsabile",
    "un responsabile",
    "col responsabile",
    "al responsabile",
    "un superiore",
    // Portuguese
    "ouvidoria",
    "مع المدير",
    "مع مدير",
    "مع المسؤول",
    "o responsavel",
    "um responsavel",
    "com o responsavel",
    // Arabic
    // Hindi
    "senior se baat",
    "manager se baat",
    "मैनेजर",
];

/// Phrases saying the customer has asked before.
const REPEAT_CONTACT: &[&str] = &[
    // English
    "second time",
    "third time",
    "fourth time",
    "fifth time",
    "2nd time",
    "3rd time",
    "4th time",
    "again and again",
    "yet again",
    "how many times",
    "how many more times",
    "asked several times",
    "asked multiple times",
    "asked many times",
    "called several times",
    "called multiple times",
    "called many times",
    "emailed several times",
    "emailed multiple times",
    "contacted you several times",
    "contacted you multiple times",
    "written several times",
    "times already",
    "already told",
    "already asked",
    "already contacted",
    "already called",
    "already emailed",
    "already sent",
    "told you already",
    "still waiting",
    "still no",
    "still not",
    "still haven t",
    "still hasn t",
    "keep asking",
    "keep calling",
    "kept calling",
    "no one has answered",
    "nobody has answered",
    "no one answered",
    "no reply",
    "no response",
    "no answer",
    "weeks now",
    "days now",
    // French
    "deuxieme fois",
    "troisieme fois",
    "combien de fois",
    "deja plusieurs fois",
    "deja dit",
    "deja demande",
    "deja contacte",
    "deja appele",
    "deja ecrit",
    "toujours pas recu*",
    "toujours pas arriv*",
    "toujours pas de reponse",
    "toujours rien recu",
    "toujours aucune",
    "toujours en attente",
    "j attends toujours",
    "aucune reponse",
    "sans reponse",
    "pas de reponse",
    // German
    "zum dritten mal",
    "zum zweiten mal",
    "zum wiederholten*",
    "schon wieder kein*",
    "schon wieder nicht",
    "wie oft noch",
    "schon mehrfach",
    "bereits mehrfach",
    "schon mehrmals",
    "bereits mehrmals",
    "warte noch immer",
    "immer noch nicht",
    "immer noch kein*",
    "noch immer nicht",
    "noch immer kein*",
    "keine antwort",
    "keine reaktion",
    "warte immer noch",
    // Spanish
    "tercera vez",
    "segunda vez",
    "cuantas veces",
    "ya les dije",
    "ya os dije",
    "sigo esperando",
    "aun no me",
    "todavia no me",
    "aun no llega",
    "todavia no llega",
    "sin respuesta",
    "ninguna respuesta",
    // Italian
    "terza volta",
    "seconda volta",
    "quante volte",
    "ancora niente",
    "ancora nessuna",
    "sto ancora aspettando",
    "nessuna risposta",
    "gia detto",
    "gia scritto",
    // Portuguese
    "terceira vez",
    "quantas vezes",
    "ainda estou esperando",
    "ainda nao recebi",
    "ainda nao chegou",
    "ainda nao responderam",
    "ainda nao resolveram",
    "continuo esperando",
    "sem resposta",
    "nenhuma resposta",
    "ja falei",
    "ja liguei",
    // Arabic
    "للمره الثالثه",
    "للمره الثانيه",
    "عده مرات",
    "كم مره",
    "لا يوجد رد",
    "بدون رد",
    "ما زلت انتظر",
    "مازلت انتظر",
    // Hindi
    "kitni baar",
    "kitni bar",
    "kai baar",
    "kai bar",
    "abhi tak nahi",
    "ab tak nahi",
    "teesri baar",
    "dusri baar",
    "कितनी बार",
    "कई बार",
    "अभी तक",
];

/// Phrases of a danger to someone's safety.
const SAFETY: &[&str] = &[
    // English
    "caught fire",
    "set fire",
    "fire hazard",
    "burst into flames",
    "in flames",
    "burned me",
    "burnt me",
    "burned my",
    "burnt my",
    "burns on",
    "exploded",
    "explosion",
    "injured",
    "injury",
    "hurt me",
    "got hurt",
    "hospital",
    "allergic reaction",
    "anaphyla*",
    "food poisoning",
    "poisoned",
    "made me sick",
    "electric shock",
    "electrocut*",
    "overheat*",
    "sparking",
    "gas leak",
    "carbon monoxide",
    "unsafe",
    "choking hazard",
    "smoke coming",
    // French
    "incendie",
    "pris feu",
    "prendre feu",
    "brulure*",
    "m a brule",
    "explose",
    "blesse",
    "blessure*",
    "hopital",
    "dangereux",
    "intoxication",
    "reaction allergique",
    "electrocut*",
    "surchauffe",
    "fuite de gaz",
    // German
    "in flammen",
    "verbrannt",
    "verbrennung*",
    "explodiert",
    "explosion",
    "verletzt",
    "verletzung*",
    "krankenhaus",
    "lebensgefahr*",
    "lebensgefahrlich",
    "stromschlag",
    "vergiftung",
    "allergische reaktion",
    "uberhitz*",
    "gasleck",
    // Spanish
    "incendio",
    "se incendio",
    "quemadura*",
    "me quemo",
    "exploto",
    "explosion",
    "lesion",
    "hospital",
    "peligroso",
    "intoxicacion",
    "reaccion alergica",
    "descarga electrica",
    "fuga de gas",
    // Italian
    "preso fuoco",
    "ustion*",
    "esploso",
    "esplosione",
    "ferito",
    "ferita",
    "ospedale",
    "pericoloso",
    "intossicazione",
    "reazione allergica",
    "scossa elettrica",
    "fuga di gas",
    // Portuguese
    "pegou fogo",
    "queimadura*",
    "explodiu",
    "explosao",
    "ferido",
    "ferimento",
    "perigoso",
    "intoxicacao",
    "reacao alergica",
    "choque eletrico",
    "vazamento de gas",
    // Arabic
    "حريق",
    "انفجر",
    "انفجار",
    "مستشفى",
    "تسمم",
    "صعق",
    // Hindi
    "aag lag*",
    "blast ho*",
    "current laga",
    "khatarnak",
    "आग लग*",
    "अस्पताल",
    "खतरनाक",
];

/// One automaton over every phrase of every cue, and the cue of each pattern.
struct CueMatcher {
    automaton: AhoCorasick,
    cue_of_pattern: Vec<UrgencyCue>,
}

static MATCHER: LazyLock<CueMatcher> = LazyLock::new(|| {
    let mut patterns = Vec::new();
    let mut cue_of_pattern = Vec::new();
    let mut add = |cue: UrgencyCue, phrase: &str| {
        // Texts are " w1 w2 … wn ": a whole-word phrase is " phrase ", a prefix one " phrase".
        let pattern = match phrase.strip_suffix('*') {
            Some(prefix) => format!(" {}", normalize(prefix).trim()),
            None => format!(" {} ", normalize(phrase).trim()),
        };
        patterns.push(pattern);
        cue_of_pattern.push(cue);
    };
    for verb in CANCEL_VERBS {
        for determiner in CANCEL_DETERMINERS {
            for thing in CANCELLED_THINGS {
                add(
                    UrgencyCue::CancelThreat,
                    &format!("{verb} {determiner} {thing}"),
                );
            }
        }
    }
    for (cue, phrases) in [
        (UrgencyCue::CancelThreat, CANCEL_THREAT),
        (UrgencyCue::LegalThreat, LEGAL_THREAT),
        (UrgencyCue::ManagerRequest, MANAGER_REQUEST),
        (UrgencyCue::RepeatContact, REPEAT_CONTACT),
        (UrgencyCue::Safety, SAFETY),
    ] {
        for phrase in phrases {
            add(cue, phrase);
        }
    }
    CueMatcher {
        automaton: AhoCorasick::new(&patterns).expect("the cue phrases build an automaton"),
        cue_of_pattern,
    }
});

/// The text as cue phrases are matched: " w1 w2 … wn ", lowercased, Latin accents and Arabic
/// letter variants folded, every run of characters that are not letters or digits one space.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    for c in text.chars().flat_map(char::to_lowercase) {
        let folded = crate::fold_letter(c);
        if folded.is_alphanumeric() || is_combining_mark(folded) {
            out.push(folded);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if !out.ends_with(' ') {
        out.push(' ');
    }
    out
}

/// Devanagari vowel signs and viramas are marks, not letters, to `char::is_alphanumeric`; they
/// belong to their word.
fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0900}'..='\u{0903}' | '\u{093A}'..='\u{094F}' | '\u{0951}'..='\u{0957}' | '\u{0962}'..='\u{0963}')
}

/// The urgency cues of an inbound message's text (see the module doc).
pub fn infer_urgency_cues(text: &str) -> UrgencyCues {
    if text.is_empty() {
        return UrgencyCues::NONE;
    }
    let matcher = &*MATCHER;
    let normalized = normalize(text);
    matcher
        .automaton
        .find_overlapping_iter(&normalized)
        .map(|found| matcher.cue_of_pattern[found.pattern().as_usize()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cues(text: &str) -> Vec<&'static str> {
        infer_urgency_cues(text)
            .iter()
            .map(UrgencyCue::as_str)
            .collect()
    }

    #[test]
    fn each_cue_is_heard_in_every_language_it_lists() {
        let cases: &[(&str, UrgencyCue)] = &[
            (
                "I will cancel my subscription if this isn't fixed",
                UrgencyCue::CancelThreat,
            ),
            ("Je vais résilier mon abonnement", UrgencyCue::CancelThreat),
            ("Ich kündige meinen Vertrag!", UrgencyCue::CancelThreat),
            ("Me voy a dar de baja", UrgencyCue::CancelThreat),
            ("Voglio la disdetta del contratto", UrgencyCue::CancelThreat),
            ("Vou cancelar minha assinatura", UrgencyCue::CancelThreat),
            ("أريد إلغاء الاشتراك فورا", UrgencyCue::CancelThreat),
            (
                "main connection cancel karwa dunga",
                UrgencyCue::CancelThreat,
            ),
            ("My lawyer will hear about this", UrgencyCue::LegalThreat),
            ("Je vais porter plainte", UrgencyCue::LegalThreat),
            ("Ich gehe zum Anwalt", UrgencyCue::LegalThreat),
            ("Voy a hablar con mi abogado", UrgencyCue::LegalThreat),
            ("Chiamo il mio avvocato", UrgencyCue::LegalThreat),
            ("Vou reclamar no Procon", UrgencyCue::LegalThreat),
            ("سأرفع دعوى ضدكم", UrgencyCue::LegalThreat),
            ("consumer court jaunga", UrgencyCue::LegalThreat),
            ("Let me speak to a manager", UrgencyCue::ManagerRequest),
            (
                "Je veux parler à un responsable",
                UrgencyCue::ManagerRequest,
            ),
            (
                "Ich will Ihren Vorgesetzten sprechen",
                UrgencyCue::ManagerRequest,
            ),
            ("Quiero hablar con el gerente", UrgencyCue::ManagerRequest),
            (
                "Voglio parlare con il responsabile",
                UrgencyCue::ManagerRequest,
            ),
            ("Quero falar com o responsável", UrgencyCue::ManagerRequest),
            ("This is the third time I ask", UrgencyCue::RepeatContact),
            ("Toujours pas de réponse", UrgencyCue::RepeatContact),
            ("Ich warte immer noch", UrgencyCue::RepeatContact),
            ("Es la tercera vez que escribo", UrgencyCue::RepeatContact),
            ("Ve lo scrivo per la terza volta", UrgencyCue::RepeatContact),
            ("Já liguei várias vezes", UrgencyCue::RepeatContact),
            ("kitni baar bolna padega", UrgencyCue::RepeatContact),
            ("The charger caught fire last night", UrgencyCue::Safety),
            ("Le chargeur a pris feu", UrgencyCue::Safety),
            ("Das Ladegerät ist explodiert", UrgencyCue::Safety),
            ("Mi hijo tuvo una reacción alérgica", UrgencyCue::Safety),
            ("La batteria è esplosa, pericoloso!", UrgencyCue::Safety),
            ("O celular pegou fogo", UrgencyCue::Safety),
            ("حدث انفجار في الجهاز", UrgencyCue::Safety),
            ("phone me aag lag gayi", UrgencyCue::Safety),
        ];
        for (text, cue) in cases {
            assert!(
                infer_urgency_cues(text).contains(*cue),
                "{text:?} should carry {}: got {:?}",
                cue.as_str(),
                cues(text)
            );
        }
    }

    #[test]
    fn ordinary_messages_carry_no_cue() {
        for text in [
            "",
            "Can I cancel my order and get the blue one instead?",
            "Love the new update, thanks!",
            "The basketball court was packed",
            "Where is my parcel?",
            "Ich liebe dieses Produkt",
            "Merci pour votre aide",
            "Mi pedido llegó tarde",
            "I went to the store again",
            "this song is fire",
            // False alarms found on tweets (benches/urgency_cues.sh), kept out since.
            "Plus de 200 villes renforcent leur résilience",
            "Plan B kündigt neue EP an",
            "Non conosco le sue idee",
            "No huge escalators for sure",
            "Bolton Wanderers have sacked their manager",
            "Thaíse não me faz lembrar de BBB agora",
            "schon wieder Hunger",
            "books by Nicholas Sparks",
        ] {
            assert!(cues(text).is_empty(), "{text:?}: {:?}", cues(text));
        }
    }

    #[test]
    fn phrases_match_whole_words_and_prefixes_only_where_marked() {
        // "sue" is a whole word: not inside "issue" or "pursue".
        assert!(cues("there is an issue I pursue").is_empty());
        assert_eq!(cues("I will sue"), ["legal_threat"]);
        // "kundig*" is a prefix: "Kündigung", but not "ankündigen" (to announce).
        assert_eq!(cues("Kündigung ist raus"), ["cancel_threat"]);
        assert!(cues("wir ankündigen").is_empty());
    }

    #[test]
    fn several_cues_in_one_text_are_all_heard() {
        let heard = infer_urgency_cues(
            "Third time I ask: get me your manager or my lawyer will, and I cancel my account",
        );
        for cue in [
            UrgencyCue::RepeatContact,
            UrgencyCue::ManagerRequest,
            UrgencyCue::LegalThreat,
            UrgencyCue::CancelThreat,
        ] {
            assert!(heard.contains(cue), "{}", cue.as_str());
        }
        assert!(!heard.contains(UrgencyCue::Safety));
    }

    #[test]
    fn bits_round_trip_and_drop_unknown_ones() {
        let all: UrgencyCues = UrgencyCue::ALL.into_iter().collect();
        assert_eq!(UrgencyCues::from_bits(all.bits()), all);
        assert_eq!(UrgencyCues::from_bits(0xFF00), UrgencyCues::NONE);
        assert_eq!(all.iter().count(), UrgencyCue::ALL.len());
    }
}
