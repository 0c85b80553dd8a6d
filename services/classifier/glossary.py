"""Danish words for the English and German words of municipal mail (pure data).

The unit profiles are Danish (KL's KLE plan, unit names, case titles), so an English or German
letter shares few words with them: about a sixth of the sample municipality's mail is in
another language, and the model's first choice was right for half of the English and a fifth
of the German items. Each foreign word here adds the Danish lemma(s) of its meaning to the
item's words, the way a clerk reads "building permit" as "byggetilladelse". General municipal
vocabulary, not tuned to any data set; extend it freely. Words that are also Danish words of
another meaning ("fire" is four, "rente" interest, "rat" a steering wheel, "kind" a cheek) are
left out.
"""

from __future__ import annotations

import re

_ENGLISH = """
abroad:udland accident:ulykke account:konto address:adresse adult:voksen allowance:ydelse
apartment:lejlighed application:ansøgning apply:ansøge appointment:aftale asbestos:asbest
assessment:vurdering assistance:hjælp asylum:asyl bank:bank bat:flagermus battery:batteri
benefit:ydelse bicycle:cykel bike:cykel bill:regning bin:affaldsspand birth:fødsel
board:bestyrelse budget:budget building:bygning bulky:storskrald bus:bus business:virksomhed
car:bil care:pleje carer:pårørende cash:kontanthjælp certificate:attest charge:gebyr
child:barn childcare:dagtilbud children:børn citizen:borger citizenship:indfødsret
cleaning:rengøring clerk:sagsbehandler collection:tømning complaint:klage computer:computer
construction:byggeri contract:kontrakt council:kommunalbestyrelse councillor:byrådsmedlem
creche:vuggestue culture:kultur cycle:cykel cycling:cykel daycare:dagtilbud death:dødsfald
debt:gæld demolition:nedrivning dementia:demens dental:tandpleje dentist:tandlæge
deposit:depositum disability:handicap disabled:handicap doctor:læge drainage:kloak
driving:kørsel education:uddannelse elderly:ældre election:valg electricity:el
employee:medarbejder employer:arbejdsgiver employment:beskæftigelse enrol:indskrivning
enrolment:indskrivning environment:miljø event:arrangement eviction:udsættelse
extension:tilbygning family:familie fee:gebyr flat:lejlighed flood:oversvømmelse
food:mad footpath:fortov foster:pleje fraud:svindel funding:tilskud garbage:affald
garden:have glass:glas grant:tilskud gravel:grus green:grøn grit:salt gritting:glatførebekæmpelse
guardian:værge harassment:chikane health:sundhed healthcare:sundhed hearing:høring help:hjælp
helper:hjælper holiday:ferie home:hjem homeless:hjemløs hospital:sygehus house:hus
household:husstand housing:bolig illness:sygdom income:indkomst insurance:forsikring
integration:integration interpreter:tolk invoice:faktura job:job kindergarten:børnehave
landlord:udlejer language:sprog laptop:computer lease:leje leave:orlov library:bibliotek
licence:tilladelse license:tilladelse lighting:belysning loan:lån lorry:lastbil mayor:borgmester
meal:madservice medical:læge medicine:medicin meeting:møde minister:minister move:flytning
moving:flytning municipal:kommunal municipality:kommune museum:museum music:musik
neighbour:nabo neighbor:nabo noise:støj nursery:vuggestue nursing:pleje parent:forælder
park:park parking:parkering passport:pas password:adgangskode path:sti pavement:fortov
payment:betaling payslip:lønseddel pension:pension permission:tilladelse permit:tilladelse
pest:skadedyr phishing:phishing planning:planlægning plan:plan playground:legeplads
police:politi pollution:forurening pothole:hul press:presse property:ejendom
rats:rotte receipt:kvittering recruitment:rekruttering recycling:genbrug refund:tilbagebetaling
refugee:flygtning registration:registrering reimbursement:refusion reminder:rykker
removal:fjernelse renovation:renovering rent:husleje repair:reparation resident:beboer
residence:opholdstilladelse road:vej roof:tag rubbish:affald salary:løn salt:salt
school:skole security:sikkerhed sewage:spildevand sewer:kloak shelter:herberg sick:syg
sickness:sygdom sign:skilt signage:skilt skip:container snow:sne social:social
special:særlig sport:idræt sports:idræt staff:personale street:gade streetlight:gadelys
student:elev summerhouse:sommerhus support:støtte tax:skat teacher:lærer traffic:trafik
transport:transport tree:træ unemployed:ledig unemployment:ledighed vacancy:stilling
vehicle:køretøj visa:visum volunteer:frivillig wage:løn waste:affald water:vand
welfare:velfærd wheelchair:kørestol winter:vinter work:arbejde worker:medarbejder
youth:ung zoning:lokalplan
"""

_GERMAN = """
abfall:affald abwasser:spildevand amt:kommune anbau:tilbygning anmeldung:indskrivning
antrag:ansøgning arbeit:arbejde arbeitslos:ledig arzt:læge ausländer:udlænding
baugenehmigung:byggetilladelse bauen:byggeri behinderung:handicap bibliothek:bibliotek
bürger:borger bürgermeister:borgmester einkommen:indkomst eltern:forældre ferienhaus:sommerhus
fahrrad:cykel familie:familie gebühr:gebyr gemeinde:kommune genehmigung:tilladelse
gesundheit:sundhed grundsteuer:ejendomsskat haus:hus hilfe:hjælp kinder:børn
kindergarten:børnehave kindergartenplatz:børnehave kita:dagtilbud krankheit:sygdom kosten:pris
lärm:støj lehrer:lærer miete:husleje müll:affald nachbar:nabo parken:parkering
parkplatz:parkering pflege:pleje rechnung:faktura schule:skole sozial:social
spielplatz:legeplads steuer:skat straße:vej strasse:vej umzug:flytning unterstützung:støtte
wasser:vand wohnung:bolig zahlung:betaling zahlungserinnerung:rykker
"""


def _table(text: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for pair in text.split():
        word, _, danish = pair.partition(":")
        table[word] = (*table.get(word, ()), *danish.split(","))
    return table


DANISH: dict[str, tuple[str, ...]] = {**_table(_ENGLISH), **_table(_GERMAN)}
_PLURAL = re.compile(r"(?:ies|es|s|en|n|e)$")


def danish(word: str) -> tuple[str, ...]:
    """The Danish words for a lower-cased English or German word (plural endings tried off),
    or ()."""
    hit = DANISH.get(word)
    if hit is None and len(word) > 4:
        stem = _PLURAL.sub("", word)
        hit = DANISH.get(stem) or DANISH.get(stem + "y")
    return hit or ()
